/**
 * SidecarConfig: everything the runtime reads, validated by the same code at synth time
 * (constructs) and at process start (runtime). A config the runtime would reject can never
 * be synthesized.
 */
import * as z from 'zod';
import { PROVIDER_TYPES, DEFAULT_BASE_URLS, type ProviderType } from './providers';
import {
  AuditSchema,
  BudgetSchema,
  GuardrailsSchema,
  LoopGuardSchema,
  RateLimitSchema,
  ReservationSchema,
  StoreSchema,
  ToolSchema,
} from './policy';
import { SecretRefSchema } from './secret-ref';

export { SecretRefSchema, type SecretRef } from './secret-ref';

const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const name = () =>
  z.string().regex(NAME_PATTERN, {
    error: "must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters",
  });

const httpUrl = z.string().refine(isHttpUrl, { error: 'must be an absolute http(s) URL' });

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password;
  } catch {
    return false;
  }
}

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().positive();

const ListenSchema = z.strictObject({
  host: z.string().min(1).describe('Interface to bind. The sidecar binds loopback so only its pod can call it.'),
  port: port.describe('TCP port (0: any free port, reported in the start-up log).'),
});

export const ProviderSchema = z
  .strictObject({
    name: name().describe('Unique name, used in metrics (provider label) and logs.'),
    type: z.enum(PROVIDER_TYPES).describe('API the provider speaks: openai, anthropic, azure-openai, openai-compatible.'),
    baseUrl: httpUrl
      .optional()
      .describe(
        'Base URL as the official SDK takes it (https://api.openai.com/v1, https://api.anthropic.com). ' +
          'Azure OpenAI: the resource endpoint (https://NAME.openai.azure.com). Required for azure-openai and openai-compatible.',
      ),
    apiKey: SecretRefSchema.optional().describe(
      "The provider key the runtime injects. Without it the client's own credentials are forwarded.",
    ),
    apiVersion: z
      .string()
      .min(1)
      .optional()
      .describe('Azure OpenAI api-version for deployment-style URLs. Without it the /openai/v1 API is used.'),
    deployments: z
      .record(z.string().min(1), z.string().min(1))
      .optional()
      .describe('Azure OpenAI: model name to deployment name (deployment-style URLs, with apiVersion).'),
    modelMap: z
      .record(z.string().min(1), z.string().min(1))
      .optional()
      .describe('Model names rewritten before the request goes to this provider (requested -> served).'),
    headers: z
      .record(z.string().regex(HEADER_NAME_PATTERN, { error: 'must be an HTTP header name' }), z.string().regex(/^[^\r\n]*$/))
      .optional()
      .describe('Extra static headers sent to this provider (not secrets: use apiKey).'),
    fallbackModel: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The model this provider serves requests of the other API shape with (an OpenAI request failing over to Anthropic, ' +
          'or the reverse) when modelMap names none. Without either, it takes only requests of its own shape.',
      ),
    signingKey: SecretRefSchema.optional().describe(
      'cdk-agents-gateway: the key this sidecar signs its identity with (HMAC-SHA256); the gateway holds the same key for this agent.',
    ),
  })
  // Runs even when fields failed to parse (one run reports every problem): the input is unchecked here.
  .superRefine(
    (value, ctx) => {
      const provider = value as Record<string, unknown>;
      const type = provider.type as ProviderType;
      if (!(PROVIDER_TYPES as readonly unknown[]).includes(type)) return;
      if (provider.baseUrl === undefined && !DEFAULT_BASE_URLS[type]) {
        ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: `is required for type ${type}` });
      }
      if (type === 'cdk-agents-gateway') {
        if (provider.signingKey === undefined) {
          ctx.addIssue({ code: 'custom', path: ['signingKey'], message: 'is required for type cdk-agents-gateway (the gateway rejects unsigned requests)' });
        }
        if (provider.apiKey !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['apiKey'], message: 'does not apply to a gateway: provider keys live in the gateway; remove it' });
        }
        if (provider.fallbackModel !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['fallbackModel'], message: 'does not apply to a gateway: it serves both APIs itself; remove it' });
        }
      } else if (provider.signingKey !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['signingKey'], message: 'only applies to type cdk-agents-gateway; remove it' });
      }
      if (provider.fallbackModel !== undefined && provider.apiKey === undefined && type !== 'cdk-agents-gateway') {
        ctx.addIssue({
          code: 'custom',
          path: ['apiKey'],
          message: "is required with fallbackModel: requests of the other API shape carry the other provider's credentials, so this provider must hold its own key",
        });
      }
      if (type !== 'azure-openai') {
        for (const field of ['apiVersion', 'deployments'] as const) {
          if (provider[field] !== undefined) {
            ctx.addIssue({ code: 'custom', path: [field], message: `only applies to type azure-openai; remove it` });
          }
        }
      } else if (provider.deployments !== undefined && provider.apiVersion === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['apiVersion'],
          message: 'is required with deployments (deployment-style URLs need an api-version)',
        });
      }
    },
    { when: isObject },
  );

function isObject(payload: { value: unknown }): boolean {
  return typeof payload.value === 'object' && payload.value !== null;
}

export const PriceSchema = z.strictObject({
  input: z.number().nonnegative().describe('USD per million uncached input tokens.'),
  output: z.number().nonnegative().describe('USD per million output tokens.'),
  cacheRead: z.number().nonnegative().optional().describe('USD per million cache-read input tokens. Default: input.'),
  cacheWrite: z.number().nonnegative().optional().describe('USD per million cache-write input tokens. Default: input.'),
});

const TimeoutsSchema = z
  .strictObject({
    connectMs: positiveMs.default(5_000).describe('TCP and TLS connect to a provider.'),
    firstByteMs: positiveMs
      .default(300_000)
      .describe('From sending a request until the first response body byte (a non-streamed answer arrives whole).'),
    idleMs: positiveMs.default(60_000).describe('Longest silence between two chunks of a streamed answer.'),
    totalMs: positiveMs.default(600_000).describe('Whole request, all attempts included.'),
    requestHeadersMs: positiveMs.default(10_000).describe('A client must send its request headers within this time.'),
    requestBodyMs: positiveMs.default(30_000).describe('A client must send its whole request within this time.'),
  })
  .superRefine(
    (value, ctx) => {
      const t = value as Record<string, unknown>;
      const pairs = [
        ['firstByteMs', 'totalMs'],
        ['requestHeadersMs', 'requestBodyMs'],
      ] as const;
      for (const [small, large] of pairs) {
        const a = t[small];
        const b = t[large];
        if (typeof a === 'number' && typeof b === 'number' && a > b) {
          ctx.addIssue({ code: 'custom', path: [small], message: `(${a}) must be <= ${large} (${b})` });
        }
      }
    },
    { when: isObject },
  );

const RetrySchema = z.strictObject({
  maxAttempts: z.number().int().min(1).max(10).default(3).describe('Upstream attempts per request, failovers included.'),
  baseDelayMs: positiveMs.default(250).describe('First backoff before retrying a provider that already failed; doubles, with full jitter.'),
  maxDelayMs: positiveMs.default(4_000).describe('Largest backoff.'),
  maxRetryAfterMs: z
    .number()
    .int()
    .nonnegative()
    .default(10_000)
    .describe('A provider asking to wait longer than this (Retry-After) is not retried within the request.'),
});

const CircuitBreakerSchema = z.strictObject({
  failureThreshold: z.number().int().min(1).default(3).describe('Consecutive failures that put a provider in cooldown.'),
  cooldownMs: positiveMs.default(30_000).describe('How long a failing provider is skipped before one trial request.'),
});

const LimitsSchema = z.strictObject({
  maxBodyBytes: z
    .number()
    .int()
    .min(1024)
    .default(10 * 1024 * 1024)
    .describe('Largest request body accepted; larger gets 413 without being read.'),
  maxModelLabels: z
    .number()
    .int()
    .min(1)
    .default(100)
    .describe('Distinct model label values in metrics; further models are counted as "other".'),
});

const ShutdownSchema = z.strictObject({
  drainMs: positiveMs
    .default(25_000)
    .describe('After SIGTERM, in-flight requests and streams get this long to finish before they are cut.'),
});

export const SidecarConfigSchema = z
  .strictObject({
    version: z.literal(1, { error: 'must be 1 (the only config version this runtime reads)' }),
    mode: z.enum(['sidecar', 'gateway']).default('sidecar').describe('sidecar: next to one agent. gateway: shared by many.'),
    agent: z
      .strictObject({
        name: name().describe('The agent label of every metric and audit record.'),
        team: name().optional().describe('Team label, a budget scope.'),
      })
      .optional()
      .describe('The agent this sidecar serves. Required in sidecar mode.'),
    listen: ListenSchema.prefault({ host: '127.0.0.1', port: 8787 }).describe('Where agents send LLM calls.'),
    admin: ListenSchema.optional().describe(
      'A second listener for scrapes, probes and approvers from outside the pod: /metrics, /healthz, /readyz and the approvals API, never LLM or tool calls.',
    ),
    providers: z.array(ProviderSchema).min(1, { error: 'must list at least one provider' }).describe(
      'Providers in priority order. Requests fail over to the next provider of the same API shape.',
    ),
    prices: z.record(z.string().min(1), PriceSchema).optional().describe('Price overrides and additions, by model id.'),
    unpricedModels: z
      .enum(['meter', 'reject'])
      .default('meter')
      .describe('A model without a price: meter its tokens and count it as unpriced, or reject the request.'),
    timeouts: TimeoutsSchema.prefault({}),
    retry: RetrySchema.prefault({}),
    circuitBreaker: CircuitBreakerSchema.prefault({}),
    limits: LimitsSchema.prefault({}),
    shutdown: ShutdownSchema.prefault({}),
    budgets: z.array(BudgetSchema).default([]).describe('Spending caps per scope and calendar window.'),
    rateLimits: z.array(RateLimitSchema).default([]).describe('Requests and tokens per minute, per scope.'),
    loopGuard: LoopGuardSchema.optional(),
    reservation: ReservationSchema.prefault({}),
    store: StoreSchema.prefault({ type: 'memory' }),
    guardrails: GuardrailsSchema.prefault({}),
    tools: z.array(ToolSchema).default([]).describe('Tools the agent calls through POST /tools/{name}.'),
    approvals: z
      .strictObject({
        token: SecretRefSchema.describe('Bearer token approvers present (compared in constant time).'),
      })
      .optional()
      .describe('Required when a tool requiresApproval.'),
    audit: AuditSchema.prefault({}),
    gateway: z
      .strictObject({
        agents: z
          .array(
            z.strictObject({
              name: name().describe('The agent, as its sidecar names itself.'),
              team: name().optional().describe('Its team, a budget scope.'),
              signingKey: SecretRefSchema.describe('The key its sidecar signs with.'),
            }),
          )
          .min(1, { error: 'must list at least one agent (gateway.connect(agent) adds them)' })
          .describe('The agents allowed to call this gateway.'),
        maxClockSkewMs: positiveMs.default(60_000).describe('Signed requests older or newer than this are refused (replays).'),
      })
      .optional()
      .describe('Gateway mode: who may call, verified by signature. Required in gateway mode.'),
    cache: z
      .strictObject({
        ttlMs: positiveMs.default(300_000),
        maxEntries: z.number().int().positive().default(10_000).describe('In memory: the least recently used go first.'),
        maxBytes: z.number().int().positive().default(1_048_576).describe('Answers larger than this are not cached.'),
        sampled: z.boolean().default(false).describe('Also cache requests that are not deterministic (temperature other than 0).'),
        streams: z.boolean().default(false).describe('Also cache streamed answers (replayed whole).'),
      })
      .optional()
      .describe('Response cache for deterministic requests, keyed by the normalized request and the agent; in Redis when the store is Redis.'),
  })
  // Runs even when fields failed to parse, so one run reports every problem: the input is unchecked here.
  .superRefine(
    (config, ctx) => {
      const raw = config as { mode?: unknown; agent?: unknown; providers?: unknown };
      if ((raw.mode === undefined || raw.mode === 'sidecar') && raw.agent === undefined) {
        ctx.addIssue({ code: 'custom', path: ['agent'], message: 'is required in sidecar mode ({"name": "my-agent"})' });
      }
      const gateway = (config as { gateway?: unknown }).gateway;
      if (raw.mode === 'gateway' && gateway === undefined) {
        ctx.addIssue({ code: 'custom', path: ['gateway'], message: 'is required in gateway mode: the agents allowed to call and their signing keys' });
      }
      if (raw.mode !== 'gateway' && gateway !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['gateway'], message: 'only applies in gateway mode; set mode: "gateway" or remove it' });
      }
      if (raw.mode === 'gateway' && Array.isArray(raw.providers) && raw.providers.some((p: { type?: unknown } | null) => p?.type === 'cdk-agents-gateway')) {
        ctx.addIssue({ code: 'custom', path: ['providers'], message: 'a gateway cannot use another gateway as a provider' });
      }
      checkPolicyReferences(config as Record<string, unknown>, ctx);
      if (!Array.isArray(raw.providers)) return;
      const seen = new Map<unknown, number>();
      raw.providers.forEach((provider: { name?: unknown } | null, i) => {
        const providerName = provider?.name;
        if (typeof providerName !== 'string') return;
        const first = seen.get(providerName);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['providers', i, 'name'],
            message: `"${providerName}" is already used by providers[${first}]; provider names must be unique`,
          });
        } else {
          seen.set(providerName, i);
        }
      });
    },
    { when: isObject },
  )
  .describe('cdk-agents runtime configuration (sidecar and gateway).');

/** Cross-field rules of the policy sections; the input is unchecked (see the caller). */
function checkPolicyReferences(config: Record<string, unknown>, ctx: z.RefinementCtx): void {
  // A team budget needs a team: the sidecar's own, or in gateway mode at least one connected agent's.
  const gatewayAgents = (config.gateway as { agents?: unknown } | undefined)?.agents;
  const team =
    config.mode === 'gateway'
      ? Array.isArray(gatewayAgents) && gatewayAgents.some((a: { team?: unknown } | null) => a?.team !== undefined)
        ? true
        : undefined
      : (config.agent as { team?: unknown } | undefined)?.team;
  for (const section of ['budgets', 'rateLimits'] as const) {
    const list = config[section];
    if (!Array.isArray(list)) continue;
    const seen = new Map<string, number>();
    list.forEach((item: Record<string, unknown> | null, i) => {
      if (!item || typeof item !== 'object') return;
      if (item.scope === 'team' && team === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [section, i, 'scope'],
          message:
            config.mode === 'gateway'
              ? 'team needs at least one gateway.agents[].team: give the connected agents their teams, or use another scope'
              : 'team needs agent.team: set the team whose budget this is, or use another scope',
        });
      }
      const key = JSON.stringify([item.scope, item.unit, item.period]);
      const first = seen.get(key);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: [section, i], message: `repeats ${section}[${first}] (same scope, unit and period); keep one` });
      } else {
        seen.set(key, i);
      }
    });
  }
  const tools = config.tools;
  if (Array.isArray(tools)) {
    const names = new Map<unknown, number>();
    tools.forEach((tool: Record<string, unknown> | null, i) => {
      if (!tool || typeof tool !== 'object') return;
      const first = names.get(tool.name);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['tools', i, 'name'], message: `"${String(tool.name)}" is already used by tools[${first}]; tool names must be unique` });
      } else {
        names.set(tool.name, i);
      }
      if (tool.requiresApproval === true && config.approvals === undefined) {
        ctx.addIssue({ code: 'custom', path: ['tools', i, 'requiresApproval'], message: 'needs approvals.token (the approvers\' bearer token, by reference)' });
      }
    });
  }
}

/** The config as written (defaults optional): what constructs produce. */
export type SidecarConfigInput = z.input<typeof SidecarConfigSchema>;
/** The config as the runtime sees it, every default filled in. */
export type SidecarConfig = z.output<typeof SidecarConfigSchema>;
export type ProviderConfig = z.output<typeof ProviderSchema>;

/** One validation problem, located by JSON path (`providers[1].baseUrl`). */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

export class ConfigValidationError extends Error {
  constructor(
    public readonly issues: readonly ConfigIssue[],
    /** Where the config came from (a file path), when known. */
    public readonly source?: string,
  ) {
    super(`invalid cdk-agents config${source ? ` (${source})` : ''}:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigValidationError';
  }
}

/** Formats a path as JSON-path-like text: `providers[1].baseUrl`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

function toIssues(error: z.ZodError): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        issues.push({ path: formatPath([...issue.path, key]), message: 'unknown field; check its spelling against sidecar-config.schema.json' });
      }
    } else {
      issues.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  return issues;
}

/** Validates a config, filling defaults. Every problem is reported, each by its path. */
export function validateSidecarConfig(input: unknown): { config?: SidecarConfig; issues: ConfigIssue[] } {
  const result = SidecarConfigSchema.safeParse(input);
  if (result.success) return { config: result.data, issues: [] };
  return { issues: toIssues(result.error) };
}

/** Validates a config, throwing a ConfigValidationError that lists every problem by path. */
export function parseSidecarConfig(input: unknown): SidecarConfig {
  const { config, issues } = validateSidecarConfig(input);
  if (!config) throw new ConfigValidationError(issues);
  return config;
}
