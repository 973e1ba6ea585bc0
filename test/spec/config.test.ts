/**
 * SidecarConfig validation: defaults are filled, every problem of a bad config is reported in
 * one run with its path, every config built from valid parts is accepted and survives a JSON
 * round trip, and the published JSON Schema matches the config's top level.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { configArb, GATEWAY } from '../support/config-arbitraries';
import {
  ConfigValidationError,
  formatPath,
  parseSidecarConfig,
  SidecarConfigSchema,
  ProviderSchema,
  validateSidecarConfig,
  type ConfigIssue,
} from '../../lib/spec/config';

const DEFAULTS = {
  mode: 'sidecar',
  listen: { host: '127.0.0.1', port: 8787 },
  unpricedModels: 'meter',
  timeouts: { connectMs: 5_000, firstByteMs: 300_000, idleMs: 60_000, totalMs: 600_000, requestHeadersMs: 10_000, requestBodyMs: 30_000 },
  retry: { maxAttempts: 3, baseDelayMs: 250, maxDelayMs: 4_000, maxRetryAfterMs: 10_000 },
  circuitBreaker: { failureThreshold: 3, cooldownMs: 30_000 },
  limits: { maxBodyBytes: 10 * 1024 * 1024, maxModelLabels: 100 },
  shutdown: { drainMs: 25_000 },
  // Policy: nothing is capped unless configured, but the default guardrails are on.
  budgets: [],
  rateLimits: [],
  reservation: { defaultMaxOutputTokens: 4_096 },
  store: { type: 'memory' },
  guardrails: {
    enabled: true,
    input: {
      maxBytes: 1_048_576,
      maxMessages: 1_000,
      maxPromptTokens: 400_000,
      injectionWarnScore: 0.4,
      injectionBlockScore: 0.75,
      scanToolResults: true,
      denyPatterns: [],
    },
    output: { pii: false, phone: false },
    actions: {},
  },
  tools: [],
  audit: { captureContent: false },
};

const LITERAL_SECRET = 'must be a reference {"env": "NAME"} or {"file": "/path"}, never a literal secret';
const UNKNOWN_FIELD = 'unknown field; check its spelling against sidecar-config.schema.json';


const byPath = (issues: readonly ConfigIssue[]) => [...issues].sort((a, b) => (a.path + a.message).localeCompare(b.path + b.message));

describe('defaults', () => {
  test('a minimal sidecar config gets every default', () => {
    const { config, issues } = validateSidecarConfig({ version: 1, agent: { name: 'support-bot' }, providers: [{ name: 'openai', type: 'openai' }] });
    expect(issues).toEqual([]);
    expect(config).toEqual({
      version: 1,
      agent: { name: 'support-bot' },
      providers: [{ name: 'openai', type: 'openai' }],
      ...DEFAULTS,
    });
  });

  test('partial sections are completed field by field; given values win', () => {
    const config = parseSidecarConfig({
      version: 1,
      mode: 'gateway',
      gateway: GATEWAY,
      providers: [{ name: 'anthropic', type: 'anthropic', apiKey: { file: '/var/run/secrets/anthropic' } }],
      timeouts: { idleMs: 5_000 },
      retry: { maxAttempts: 1 },
      limits: { maxModelLabels: 7 },
      listen: { host: '0.0.0.0', port: 0 },
    });
    expect(config.mode).toBe('gateway');
    expect(config.agent).toBeUndefined();
    expect(config.timeouts).toEqual({ ...DEFAULTS.timeouts, idleMs: 5_000 });
    expect(config.retry).toEqual({ ...DEFAULTS.retry, maxAttempts: 1 });
    expect(config.limits).toEqual({ ...DEFAULTS.limits, maxModelLabels: 7 });
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 0 });
    expect(config.circuitBreaker).toEqual(DEFAULTS.circuitBreaker);
    expect(config.shutdown).toEqual(DEFAULTS.shutdown);
  });

  test('validation does not change its input', () => {
    const input = { version: 1, agent: { name: 'a' }, providers: [{ name: 'openai', type: 'openai' }], timeouts: {} };
    const copy = JSON.parse(JSON.stringify(input));
    parseSidecarConfig(input);
    expect(input).toEqual(copy);
  });
});

describe('problems are all reported at once, each by its path', () => {
  const bad = {
    version: 1,
    mode: 'sidecar', // and no agent
    providers: [
      { name: 'openai', type: 'openai', apiKey: 'sk-live-123' },
      { name: 'vllm', type: 'openai-compatible', baseUrl: 'not a url' },
      { name: 'openai', type: 'anthropic' },
      { name: 'azure', type: 'azure-openai', baseUrl: 'https://x.openai.azure.com', deployments: { 'gpt-4o': 'prod-4o' } },
      { name: 'o2', type: 'openai', apiVersion: '2024-10-21' },
      { name: 'extra', type: 'openai', bogus: 1 },
      { name: 'compat', type: 'openai-compatible' },
      { name: 'creds', type: 'openai', baseUrl: 'https://user:pass@api.example.com/v1' },
      { name: 'ftp', type: 'openai', baseUrl: 'ftp://files.example.com' },
    ],
    timeouts: { firstByteMs: 700_000, totalMs: 600_000 },
    colour: 'blue',
  };

  test('validateSidecarConfig lists every problem', () => {
    const { config, issues } = validateSidecarConfig(bad);
    expect(config).toBeUndefined();
    expect(byPath(issues)).toEqual(
      byPath([
        { path: 'agent', message: 'is required in sidecar mode ({"name": "my-agent"})' },
        { path: 'providers[0].apiKey', message: LITERAL_SECRET },
        { path: 'providers[1].baseUrl', message: 'must be an absolute http(s) URL' },
        { path: 'providers[2].name', message: '"openai" is already used by providers[0]; provider names must be unique' },
        { path: 'providers[3].apiVersion', message: 'is required with deployments (deployment-style URLs need an api-version)' },
        { path: 'providers[4].apiVersion', message: 'only applies to type azure-openai; remove it' },
        { path: 'providers[5].bogus', message: UNKNOWN_FIELD },
        { path: 'providers[6].baseUrl', message: 'is required for type openai-compatible' },
        { path: 'providers[7].baseUrl', message: 'must be an absolute http(s) URL' },
        { path: 'providers[8].baseUrl', message: 'must be an absolute http(s) URL' },
        { path: 'timeouts.firstByteMs', message: '(700000) must be <= totalMs (600000)' },
        { path: 'colour', message: UNKNOWN_FIELD },
      ]),
    );
  });

  test('parseSidecarConfig throws a ConfigValidationError listing them as "  path: message"', () => {
    let error: unknown;
    try {
      parseSidecarConfig(bad);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigValidationError);
    const e = error as ConfigValidationError;
    expect(e.issues).toHaveLength(12);
    const lines = e.message.split('\n');
    expect(lines[0]).toBe('invalid cdk-agents config:');
    expect(lines.slice(1)).toEqual(e.issues.map((i) => `  ${i.path}: ${i.message}`));
    expect(e.message).toContain(`  providers[0].apiKey: ${LITERAL_SECRET}`);
    expect(e.message).toContain('  providers[1].baseUrl: must be an absolute http(s) URL');
  });

  test.each<[string, unknown]>([
    ['a string', 'sk-ant-api03-secret'],
    ['a number', 12345],
    ['null', null],
    ['an array', ['sk-1']],
  ])('an apiKey given as %s is refused as a literal secret', (_name, apiKey) => {
    const { issues } = validateSidecarConfig({ version: 1, agent: { name: 'a' }, providers: [{ name: 'p', type: 'openai', apiKey }] });
    expect(issues).toEqual([{ path: 'providers[0].apiKey', message: LITERAL_SECRET }]);
  });

  test.each<[string, unknown, ConfigIssue[]]>([
    ['both env and file', { env: 'KEY', file: '/run/key' }, [{ path: 'providers[0].apiKey', message: 'give exactly one of "env" or "file"' }]],
    ['neither', {}, [{ path: 'providers[0].apiKey', message: 'give exactly one of "env" or "file"' }]],
    ['a bad env name', { env: '1-KEY' }, [{ path: 'providers[0].apiKey.env', message: 'must be an environment variable name' }]],
    ['a relative file', { file: 'run/key' }, [{ path: 'providers[0].apiKey.file', message: 'must be an absolute file path' }]],
    ['an extra "value" field', { env: 'KEY', value: 'sk-1' }, [{ path: 'providers[0].apiKey.value', message: UNKNOWN_FIELD }]],
  ])('apiKey with %s', (_name, apiKey, expected) => {
    const { issues } = validateSidecarConfig({ version: 1, agent: { name: 'a' }, providers: [{ name: 'p', type: 'openai', apiKey }] });
    expect(issues).toEqual(expected);
  });

  test('a provider\'s cross-field problems are reported in the same run as its type errors', () => {
    // A literal apiKey (a type error) must not hide the misplaced apiVersion of the same provider,
    // nor a mistyped timeout hide firstByteMs > totalMs: one run, every problem.
    const { issues } = validateSidecarConfig({
      version: 1,
      agent: { name: 'a' },
      providers: [{ name: 'p', type: 'openai', apiKey: 'sk-live', apiVersion: '2024-10-21' }],
      timeouts: { firstByteMs: 700_000, totalMs: 600_000, idleMs: 'soon' },
    });
    expect(issues.map((i) => i.path).sort()).toEqual(
      ['providers[0].apiKey', 'providers[0].apiVersion', 'timeouts.firstByteMs', 'timeouts.idleMs'].sort(),
    );
  });

  test('other cross-field and range rules', () => {
    const { issues } = validateSidecarConfig({
      version: 2,
      mode: 'gateway',
      gateway: GATEWAY,
      providers: [{ name: 'Open_AI', type: 'openai', headers: { 'x-ok': 'a\r\nb' } }, { name: 'x', type: 'bedrock' }],
      timeouts: { requestHeadersMs: 40_000, requestBodyMs: 30_000, connectMs: 0 },
      retry: { maxAttempts: 11 },
      limits: { maxBodyBytes: 100 },
      unpricedModels: 'ignore',
      admin: { host: '127.0.0.1', port: 70_000 },
    });
    expect(issues.map((i) => i.path).sort()).toEqual(
      [
        'version',
        'providers[0].name',
        'providers[0].headers.x-ok',
        'providers[1].type',
        'timeouts.requestHeadersMs',
        'timeouts.connectMs',
        'retry.maxAttempts',
        'limits.maxBodyBytes',
        'unpricedModels',
        'admin.port',
      ].sort(),
    );
    expect(issues.find((i) => i.path === 'version')!.message).toBe('must be 1 (the only config version this runtime reads)');
    expect(issues.find((i) => i.path === 'timeouts.requestHeadersMs')!.message).toBe('(40000) must be <= requestBodyMs (30000)');
  });

  test('no providers, and not an object at all', () => {
    expect(validateSidecarConfig({ version: 1, mode: 'gateway', gateway: GATEWAY, providers: [] }).issues).toEqual([
      { path: 'providers', message: 'must list at least one provider' },
    ]);
    const { issues } = validateSidecarConfig(null);
    expect(issues).toHaveLength(1);
    expect(issues[0].path).toBe('(root)');
    expect(validateSidecarConfig([]).config).toBeUndefined();
  });

  test('gateway mode needs no agent; sidecar mode (the default) does', () => {
    expect(validateSidecarConfig({ version: 1, mode: 'gateway', gateway: GATEWAY, providers: [{ name: 'a', type: 'anthropic' }] }).issues).toEqual([]);
    expect(validateSidecarConfig({ version: 1, providers: [{ name: 'a', type: 'anthropic' }] }).issues).toEqual([
      { path: 'agent', message: 'is required in sidecar mode ({"name": "my-agent"})' },
    ]);
  });

  test('azure-openai: deployments need apiVersion; apiVersion alone is fine', () => {
    const azure = (extra: object) =>
      validateSidecarConfig({ version: 1, mode: 'gateway', gateway: GATEWAY, providers: [{ name: 'az', type: 'azure-openai', baseUrl: 'https://r.openai.azure.com', ...extra }] }).issues;
    expect(azure({})).toEqual([]);
    expect(azure({ apiVersion: '2024-10-21' })).toEqual([]);
    expect(azure({ apiVersion: '2024-10-21', deployments: { 'gpt-4o': 'prod' } })).toEqual([]);
    expect(azure({ deployments: { 'gpt-4o': 'prod' } })).toEqual([
      { path: 'providers[0].apiVersion', message: 'is required with deployments (deployment-style URLs need an api-version)' },
    ]);
  });

  test('fallbackModel needs the provider to hold its own key, and does not apply to a gateway', () => {
    const one = (provider: object) => validateSidecarConfig({ version: 1, agent: { name: 'a' }, providers: [provider] }).issues;
    expect(one({ name: 'claude', type: 'anthropic', fallbackModel: 'claude-sonnet-4-6', apiKey: { env: 'ANTHROPIC_API_KEY' } })).toEqual([]);
    expect(one({ name: 'claude', type: 'anthropic', fallbackModel: 'claude-sonnet-4-6' })).toEqual([
      { path: 'providers[0].apiKey', message: expect.stringContaining('is required with fallbackModel') },
    ]);
    expect(one({ name: 'gw', type: 'cdk-agents-gateway', baseUrl: 'http://gw:8787', signingKey: { file: '/k' }, fallbackModel: 'x' })).toEqual([
      { path: 'providers[0].fallbackModel', message: 'does not apply to a gateway: it serves both APIs itself; remove it' },
    ]);
  });

  test('a team budget in gateway mode needs a connected agent with a team', () => {
    const budgets = [{ scope: 'team', unit: 'usd', period: 'day', limit: 5 }];
    const withTeam = { agents: [{ name: 'support', team: 'care', signingKey: { file: '/k/support' } }] };
    expect(validateSidecarConfig({ version: 1, mode: 'gateway', gateway: withTeam, providers: [{ name: 'a', type: 'anthropic' }], budgets }).issues).toEqual([]);
    expect(validateSidecarConfig({ version: 1, mode: 'gateway', gateway: GATEWAY, providers: [{ name: 'a', type: 'anthropic' }], budgets }).issues).toEqual([
      { path: 'budgets[0].scope', message: 'team needs at least one gateway.agents[].team: give the connected agents their teams, or use another scope' },
    ]);
  });

  test('formatPath', () => {
    expect(formatPath(['providers', 1, 'baseUrl'])).toBe('providers[1].baseUrl');
    expect(formatPath(['timeouts', 'firstByteMs'])).toBe('timeouts.firstByteMs');
    expect(formatPath([])).toBe('(root)');
  });
});

// ---- property: valid parts make a valid config --------------------------------------------------

describe('property: configs built from valid parts', () => {
  test('are accepted, keep what was given, fill the rest, and round-trip through JSON', () => {
    fc.assert(
      fc.property(configArb, (input) => {
        const { config, issues } = validateSidecarConfig(input);
        expect(issues).toEqual([]);
        expect(config).toBeDefined();
        const c = config!;
        // What was given is kept exactly, providers in order.
        expect(c.providers).toEqual(input.providers);
        expect(c.mode).toBe(input.mode ?? 'sidecar');
        expect(c.timeouts).toEqual({ ...DEFAULTS.timeouts, ...input.timeouts });
        expect(c.retry).toEqual({ ...DEFAULTS.retry, ...input.retry });
        expect(c.circuitBreaker).toEqual({ ...DEFAULTS.circuitBreaker, ...input.circuitBreaker });
        expect(c.limits).toEqual({ ...DEFAULTS.limits, ...input.limits });
        expect(c.shutdown).toEqual({ ...DEFAULTS.shutdown, ...input.shutdown });
        expect(c.listen).toEqual(input.listen ?? DEFAULTS.listen);
        expect(c.prices).toEqual(input.prices);
        // As written to a file and read back...
        expect(validateSidecarConfig(JSON.parse(JSON.stringify(input))).config).toEqual(c);
        // ...and the filled-in config is itself valid and unchanged by another pass.
        expect(validateSidecarConfig(JSON.parse(JSON.stringify(c))).config).toEqual(c);
      }),
      { numRuns: 300 },
    );
  });

  test('adding an unknown field anywhere in a valid config is reported at its path', () => {
    fc.assert(
      fc.property(configArb, fc.stringMatching(/^x[A-Za-z]{1,10}$/), fc.constantFrom('root', 'provider', 'timeouts'), (input, field, where) => {
        const copy = JSON.parse(JSON.stringify(input));
        let expected: string;
        if (where === 'root') {
          copy[field] = 1;
          expected = field;
        } else if (where === 'provider') {
          copy.providers[copy.providers.length - 1][field] = 1;
          expected = `providers[${copy.providers.length - 1}].${field}`;
        } else {
          copy.timeouts = { ...copy.timeouts, [field]: 1 };
          expected = `timeouts.${field}`;
        }
        expect(validateSidecarConfig(copy).issues).toEqual([{ path: expected, message: UNKNOWN_FIELD }]);
      }),
      { numRuns: 100 },
    );
  });

  test('duplicating a provider name is reported at the duplicate', () => {
    fc.assert(
      fc.property(configArb, (input) => {
        const copy = JSON.parse(JSON.stringify(input));
        const first = copy.providers[0];
        copy.providers.push({ ...first });
        const at = copy.providers.length - 1;
        expect(validateSidecarConfig(copy).issues).toEqual([
          { path: `providers[${at}].name`, message: `"${first.name}" is already used by providers[0]; provider names must be unique` },
        ]);
      }),
      { numRuns: 100 },
    );
  });
});

// ---- JSON Schema ------------------------------------------------------------------------------

describe('dist/sidecar-config.schema.json', () => {
  const file = path.join(__dirname, '..', '..', 'dist', 'sidecar-config.schema.json');
  const schema = JSON.parse(readFileSync(file, 'utf8'));

  test('lists the top-level properties of SidecarConfigSchema, and requires version and providers', () => {
    expect(Object.keys(schema.properties).sort()).toEqual(Object.keys(SidecarConfigSchema.shape).sort());
    expect(schema.required).toEqual(expect.arrayContaining(['providers', 'version']));
    // Fields with defaults are optional to write.
    for (const optional of ['mode', 'listen', 'timeouts', 'retry', 'unpricedModels', 'agent']) expect(schema.required).not.toContain(optional);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.type).toBe('object');
  });

  test('describes providers with the provider fields, name and type required', () => {
    const items = schema.properties.providers.items;
    expect(Object.keys(items.properties).sort()).toEqual(Object.keys(ProviderSchema.shape).sort());
    expect(items.required).toEqual(expect.arrayContaining(['name', 'type']));
    expect(items.properties.type.enum).toEqual(['openai', 'anthropic', 'azure-openai', 'openai-compatible', 'cdk-agents-gateway']);
    expect(items.additionalProperties).toBe(false);
  });

  test('carries the runtime defaults', () => {
    const t = schema.properties.timeouts.properties;
    for (const [key, value] of Object.entries(DEFAULTS.timeouts)) expect(t[key].default).toBe(value);
    expect(schema.properties.retry.properties.maxAttempts.default).toBe(DEFAULTS.retry.maxAttempts);
    expect(schema.properties.mode.default).toBe('sidecar');
  });
});
