/**
 * fast-check generators of sidecar configs: every section built from valid parts (what the
 * validator must accept), and the same configs with one part broken (what it must refuse, or
 * what the runtime must still be able to run if the validator accepts it).
 */
import fc from 'fast-check';
import type { SidecarConfigInput } from '../../lib/spec/config';

/** The gateway section gateway mode requires. */
export const GATEWAY = { agents: [{ name: 'support', signingKey: { file: '/var/run/cdk-agents/agents/support' } }] };

export const noProto = (k: string) => k !== '__proto__';
export const nameArb = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const urlArb = fc
  .tuple(
    fc.constantFrom('http', 'https'),
    fc.domain(),
    fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    fc.stringMatching(/^(\/[a-z0-9._-]{1,10}){0,3}$/),
  )
  .map(([scheme, host, port, p]) => `${scheme}://${host}${port ? `:${port}` : ''}${p}`);
export const secretArb = fc.oneof(
  fc.record({ env: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,30}$/) }),
  fc.record({ file: fc.stringMatching(/^\/[a-z0-9._-]{1,12}(\/[a-z0-9._-]{1,12}){0,3}$/) }),
);
const stringMap = fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }).filter(noProto), fc.string({ minLength: 1, maxLength: 20 }), { maxKeys: 3 });
const headersArb = fc.dictionary(
  fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/).filter(noProto),
  fc.string({ maxLength: 30 }).filter((v) => !/[\r\n]/.test(v)),
  { maxKeys: 3 },
);
const common = { apiKey: secretArb, modelMap: stringMap, headers: headersArb };

const providerArb = fc.oneof(
  fc.record(
    { name: nameArb, type: fc.constantFrom('openai' as const, 'anthropic' as const), baseUrl: urlArb, ...common },
    { requiredKeys: ['name', 'type'] },
  ),
  fc.record({ name: nameArb, type: fc.constant('openai-compatible' as const), baseUrl: urlArb, ...common }, { requiredKeys: ['name', 'type', 'baseUrl'] }),
  fc.oneof(
    fc.record(
      { name: nameArb, type: fc.constant('azure-openai' as const), baseUrl: urlArb, apiVersion: fc.constantFrom('2024-10-21', 'preview'), ...common },
      { requiredKeys: ['name', 'type', 'baseUrl'] },
    ),
    fc.record(
      {
        name: nameArb,
        type: fc.constant('azure-openai' as const),
        baseUrl: urlArb,
        apiVersion: fc.constantFrom('2024-10-21', '2025-04-01-preview'),
        deployments: stringMap,
        ...common,
      },
      { requiredKeys: ['name', 'type', 'baseUrl', 'apiVersion', 'deployments'] },
    ),
  ),
);

const ms = (max: number) => fc.integer({ min: 1, max });
/** Two bounds given together, the first not above the second, or neither. */
const orderedPair = (max: number) => fc.option(fc.tuple(ms(max), ms(max)).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const), { nil: undefined });
const timeoutsArb = fc
  .record({ connectMs: fc.option(ms(60_000), { nil: undefined }), idleMs: fc.option(ms(600_000), { nil: undefined }), fb: orderedPair(3_600_000), req: orderedPair(120_000) })
  .map(({ connectMs, idleMs, fb, req }) => {
    const t: Record<string, number> = {};
    if (connectMs !== undefined) t.connectMs = connectMs;
    if (idleMs !== undefined) t.idleMs = idleMs;
    if (fb) [t.firstByteMs, t.totalMs] = fb;
    if (req) [t.requestHeadersMs, t.requestBodyMs] = req;
    return t;
  });
const price = fc.double({ min: 0, max: 1_000, noNaN: true, noDefaultInfinity: true }).map((v) => (v === 0 ? 0 : v));
const priceArb = fc.record({ input: price, output: price, cacheRead: price, cacheWrite: price }, { requiredKeys: ['input', 'output'] });
const listenArb = fc.record({ host: fc.constantFrom('127.0.0.1', '0.0.0.0', '::1', 'localhost'), port: fc.integer({ min: 0, max: 65535 }) });

/** Configs of every mode from valid parts: providers, listeners, prices, timeouts, retries, limits. */
export const configArb: fc.Arbitrary<SidecarConfigInput> = fc
  .record(
    {
      mode: fc.constantFrom('sidecar' as const, 'gateway' as const),
      agent: fc.record({ name: nameArb, team: nameArb }, { requiredKeys: ['name'] }),
      listen: listenArb,
      admin: listenArb,
      providers: fc.uniqueArray(providerArb, { minLength: 1, maxLength: 5, selector: (p) => p.name }),
      prices: fc.dictionary(fc.string({ minLength: 1, maxLength: 30 }).filter(noProto), priceArb, { maxKeys: 4 }),
      unpricedModels: fc.constantFrom('meter' as const, 'reject' as const),
      timeouts: timeoutsArb,
      retry: fc.record(
        { maxAttempts: fc.integer({ min: 1, max: 10 }), baseDelayMs: ms(10_000), maxDelayMs: ms(60_000), maxRetryAfterMs: fc.nat(120_000) },
        { requiredKeys: [] },
      ),
      circuitBreaker: fc.record({ failureThreshold: fc.integer({ min: 1, max: 100 }), cooldownMs: ms(600_000) }, { requiredKeys: [] }),
      limits: fc.record({ maxBodyBytes: fc.integer({ min: 1024, max: 1 << 30 }), maxModelLabels: fc.integer({ min: 1, max: 10_000 }) }, { requiredKeys: [] }),
      shutdown: fc.record({ drainMs: ms(120_000) }, { requiredKeys: [] }),
    },
    { requiredKeys: ['providers'] },
  )
  .map((parts) => {
    const config = { version: 1 as const, ...parts } as SidecarConfigInput & { agent?: unknown };
    // Sidecar mode (explicit or by default) needs its agent; gateway mode, the agents it serves.
    if ((config.mode ?? 'sidecar') === 'sidecar' && !config.agent) config.agent = { name: 'agent' };
    if (config.mode === 'gateway') (config as SidecarConfigInput).gateway = GATEWAY;
    return config as SidecarConfigInput;
  });

// ---- the policy sections: budgets, limits, guards, store, guardrails, tools, audit, cache -------

const positive = fc.double({ min: 0.001, max: 1e6, noNaN: true, noDefaultInfinity: true });
const scopeArb = fc.constantFrom('agent' as const, 'user' as const, 'run' as const, 'team' as const);

/** Patterns valid with every flag combination the schema allows. */
const DENY_PATTERNS = ['ignore (all )?previous instructions', 'password\\s*[:=]', '\\bDROP\\s+TABLE\\b', '[0-9]{4}-[0-9]{4}', 'ﬁ|ß'];
const RULE_IDS = ['input.injection', 'input.max_bytes', 'input.unicode.bidi', 'output.secret.jwt', 'output.pii.email', 'output.pii.phone', 'output.secret.aws_access_key'];

/**
 * Redis URLs the runtime can parse. Only loopback: a check creates the runtime, which connects
 * (port 1 refuses at once; `liveRedisUrl`, when given, answers).
 */
function redisUrlArb(liveRedisUrl?: string): fc.Arbitrary<string> {
  return fc.constantFrom('redis://127.0.0.1:1', 'rediss://127.0.0.1:1/3', 'redis://[::1]:1/0', 'redis://127.0.0.1', ...(liveRedisUrl ? [liveRedisUrl] : []));
}

function policyArb(liveRedisUrl?: string) {
  return fc.record(
    {
      budgets: fc.uniqueArray(
        fc.record({ scope: scopeArb, unit: fc.constantFrom('usd' as const, 'tokens' as const), period: fc.constantFrom('minute' as const, 'hour' as const, 'day' as const, 'month' as const), limit: positive }),
        { maxLength: 4, selector: (b) => `${b.scope}/${b.unit}/${b.period}` },
      ),
      rateLimits: fc.uniqueArray(fc.record({ scope: scopeArb, unit: fc.constantFrom('requests' as const, 'tokens' as const), perMinute: positive }), {
        maxLength: 3,
        selector: (r) => `${r.scope}/${r.unit}`,
      }),
      loopGuard: fc.record(
        {
          maxIterations: fc.integer({ min: 1, max: 1_000 }),
          maxTokens: fc.integer({ min: 1, max: 10_000_000 }),
          maxCostUsd: positive,
          maxDurationMs: fc.integer({ min: 1, max: 86_400_000 }),
          maxRepeats: fc.integer({ min: 2, max: 50 }),
          runTtlMs: fc.integer({ min: 1, max: 604_800_000 }),
        },
        { requiredKeys: [] },
      ),
      reservation: fc.record({ defaultMaxOutputTokens: fc.integer({ min: 1, max: 200_000 }) }, { requiredKeys: [] }),
      store: fc.oneof(
        fc.constant({ type: 'memory' as const }),
        fc.record(
          {
            type: fc.constant('redis' as const),
            url: fc.oneof(redisUrlArb(liveRedisUrl), secretArb),
            username: fc.constantFrom('agents', 'default'),
            password: secretArb,
            tls: fc.record({ serverName: fc.constantFrom('redis.internal', 'localhost') }, { requiredKeys: [] }),
            keyPrefix: fc.constantFrom('cdka:', 'team-a:', 'x'),
            commandTimeoutMs: fc.integer({ min: 1, max: 10_000 }),
            onUnavailable: fc.constantFrom('fail-closed' as const, 'fail-open' as const, 'local' as const),
          },
          { requiredKeys: ['type', 'url'] },
        ),
      ),
      guardrails: fc.record(
        {
          enabled: fc.boolean(),
          input: fc.record(
            {
              maxBytes: fc.integer({ min: 1, max: 1 << 24 }),
              maxMessages: fc.integer({ min: 1, max: 10_000 }),
              maxPromptTokens: fc.integer({ min: 1, max: 2_000_000 }),
              injectionWarnScore: fc.double({ min: 0, max: 1, noNaN: true }),
              injectionBlockScore: fc.double({ min: 0, max: 1, noNaN: true }),
              scanToolResults: fc.boolean(),
              denyPatterns: fc.uniqueArray(
                fc.record(
                  {
                    id: fc.stringMatching(/^[a-z0-9_.-]{1,40}$/),
                    pattern: fc.constantFrom(...DENY_PATTERNS),
                    flags: fc.constantFrom('', 'i', 'u', 'iu', 'ims', 'msu'),
                    action: fc.constantFrom('block' as const, 'warn' as const),
                  },
                  { requiredKeys: ['id', 'pattern'] },
                ),
                { maxLength: 3, selector: (d) => d.id },
              ),
            },
            { requiredKeys: [] },
          ),
          output: fc.record({ pii: fc.boolean(), phone: fc.boolean() }, { requiredKeys: [] }),
          actions: fc.dictionary(fc.oneof(fc.constantFrom(...RULE_IDS), fc.stringMatching(/^(input|output)\.[a-z0-9_.-]{1,20}$/)), fc.constantFrom('block' as const, 'redact' as const, 'warn' as const, 'off' as const), {
            maxKeys: 4,
          }),
        },
        { requiredKeys: [] },
      ),
      tools: fc.uniqueArray(
        fc.record(
          {
            name: fc.stringMatching(/^[a-zA-Z0-9_-]{1,64}$/),
            endpoint: urlArb,
            timeoutMs: fc.integer({ min: 1, max: 600_000 }),
            requiresApproval: fc.boolean(),
            approvalTtlMs: fc.integer({ min: 1, max: 86_400_000 }),
            maxBodyBytes: fc.integer({ min: 1, max: 1 << 24 }),
          },
          { requiredKeys: ['name', 'endpoint'] },
        ),
        { maxLength: 3, selector: (t) => t.name },
      ),
      approvals: fc.record({ token: secretArb }),
      audit: fc.record({ file: fc.constantFrom('/var/log/cdk-agents/audit.jsonl', '/tmp/audit.jsonl'), captureContent: fc.boolean() }, { requiredKeys: [] }),
      cache: fc.record(
        { ttlMs: ms(3_600_000), maxEntries: fc.integer({ min: 1, max: 100_000 }), maxBytes: fc.integer({ min: 1, max: 1 << 24 }), sampled: fc.boolean(), streams: fc.boolean() },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  );
}

/**
 * Whole configs from valid parts, the policy sections included (as the runtime runs them, with
 * `liveRedisUrl` among the Redis stores when given). Cross-field rules are honoured: a team
 * scope comes with agent.team, a tool needing approval with the approvers' token.
 */
export function fullConfigArb(liveRedisUrl?: string): fc.Arbitrary<SidecarConfigInput> {
  return fc.tuple(configArb, policyArb(liveRedisUrl), nameArb).map(([base, policy, team]) => {
    const config = { ...base, ...policy } as SidecarConfigInput & Record<string, unknown>;
    const usesTeam = [...(config.budgets ?? []), ...(config.rateLimits ?? [])].some((l) => l.scope === 'team');
    if (usesTeam) config.agent = { name: config.agent?.name ?? 'agent', ...config.agent, team: config.agent?.team ?? team };
    if (config.tools?.some((t) => t.requiresApproval) && !config.approvals) config.approvals = { token: { env: 'APPROVER_TOKEN' } };
    return config;
  });
}

type SecretRefInput = { env?: string; file?: string };

/**
 * Makes every secret a config references exist, as a deployment would: each environment
 * variable set, each file reference moved into `dir` (where it is written). The runtime reads
 * them all when it is created; the store URL, when referenced, holds `redisUrl`.
 */
export function provideSecrets(input: SidecarConfigInput, dir: string, redisUrl: string): { config: SidecarConfigInput; env: Record<string, string>; files: Record<string, string> } {
  const config = JSON.parse(JSON.stringify(input)) as Record<string, any>;
  const env: Record<string, string> = {};
  const files: Record<string, string> = {};
  let n = 0;
  const provide = (ref: SecretRefInput | undefined, value = 'not-a-real-secret'): SecretRefInput | undefined => {
    if (!ref || typeof ref !== 'object') return ref;
    if (typeof ref.env === 'string' && ref.file === undefined) {
      env[ref.env] = value;
      return ref;
    }
    if (typeof ref.file === 'string' && ref.env === undefined) {
      const file = `${dir}/secret-${n++}`;
      files[file] = value;
      return { file };
    }
    return ref;
  };
  if (Array.isArray(config.providers)) {
    for (const p of config.providers) {
      if (p && typeof p === 'object') {
        if (p.apiKey) p.apiKey = provide(p.apiKey);
        if (p.signingKey) p.signingKey = provide(p.signingKey);
      }
    }
  }
  if (Array.isArray(config.gateway?.agents)) for (const a of config.gateway.agents) if (a && typeof a === 'object') a.signingKey = provide(a.signingKey);
  if (config.store && typeof config.store === 'object') {
    if (config.store.password) config.store.password = provide(config.store.password);
    if (config.store.url && typeof config.store.url === 'object') config.store.url = provide(config.store.url, redisUrl);
  }
  if (config.approvals && typeof config.approvals === 'object' && config.approvals.token) config.approvals.token = provide(config.approvals.token);
  return { config: config as SidecarConfigInput, env, files };
}

// ---- broken configs ----------------------------------------------------------------------------

/** Every path (keys and indices) into a JSON value. */
function pathsOf(value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (!value || typeof value !== 'object') return [];
  const out: Array<Array<string | number>> = [];
  for (const [k, v] of Object.entries(value)) {
    const key = Array.isArray(value) ? Number(k) : k;
    out.push([...prefix, key], ...pathsOf(v, [...prefix, key]));
  }
  return out;
}

function setAt(root: any, path: Array<string | number>, value: unknown, remove: boolean): void {
  let target = root;
  for (const key of path.slice(0, -1)) {
    if (!target[key] || typeof target[key] !== 'object') target[key] = {};
    target = target[key];
  }
  const last = path[path.length - 1];
  if (remove && Array.isArray(target)) target.splice(last as number, 1);
  else if (remove) delete target[last];
  else target[last] = value;
}

/** Values the runtime might choke on where the validator has a looser rule than the runtime needs. */
const EDGE_VALUES: Array<[string[], unknown[]]> = [
  [['guardrails', 'input', 'denyPatterns'], [[{ id: 'p', pattern: 'a{', flags: 'u' }], [{ id: 'p', pattern: '\\-', flags: 'iu' }], [{ id: 'p', pattern: '(', flags: '' }], [{ id: 'p', pattern: '\\p{L}+', flags: 'u' }]]],
  [['store'], [{ type: 'redis', url: 'redis://127.0.0.1:99999' }, { type: 'redis', url: 'redis://127.0.0.1:port' }, { type: 'redis', url: 'redis://[::1' }, { type: 'redis', url: 'redis://127.0.0.1:65535/15' }]],
  [['tools'], [[{ name: 't', endpoint: 'http://[x' }], [{ name: 't', endpoint: 'http://h:99999/x' }], [{ name: 't', endpoint: 'https://tools.internal:8443/run' }]]],
  [['timeouts'], [{ firstByteMs: 2, totalMs: 1 }, { requestHeadersMs: 5, requestBodyMs: 4 }, { idleMs: 0 }]],
  [['budgets'], [[{ scope: 'team', unit: 'usd', period: 'day', limit: 1 }], [{ scope: 'agent', unit: 'usd', period: 'day', limit: 0 }]]],
];

/**
 * A config from `base` with one part broken: a value anywhere replaced by arbitrary JSON or
 * removed, or a section set to an edge value. Some results are still valid; that is fine for an
 * "accepted if and only if runnable" property.
 */
export function brokenConfigArb(base: fc.Arbitrary<SidecarConfigInput>): fc.Arbitrary<SidecarConfigInput> {
  return fc.oneof(
    fc.tuple(base, fc.nat(), fc.jsonValue({ maxDepth: 2 }), fc.boolean()).map(([input, pick, value, remove]) => {
      const config = JSON.parse(JSON.stringify(input));
      const paths = pathsOf(config);
      setAt(config, paths[pick % paths.length], value, remove);
      return config as SidecarConfigInput;
    }),
    fc.tuple(base, fc.nat(), fc.nat()).map(([input, which, pick]) => {
      const config = JSON.parse(JSON.stringify(input));
      const [path, values] = EDGE_VALUES[which % EDGE_VALUES.length];
      setAt(config, path, values[pick % values.length], false);
      return config as SidecarConfigInput;
    }),
  );
}
