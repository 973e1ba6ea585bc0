/**
 * What the runtime enforces: budgets, rate limits, loop guards, guardrails, tools with
 * approval, the audit log, and where shared state lives. Part of SidecarConfig.
 */
import * as z from 'zod';
import { SecretRefSchema } from './secret-ref';

export const SCOPES = ['agent', 'user', 'run', 'team'] as const;
export type Scope = (typeof SCOPES)[number];
export const PERIODS = ['minute', 'hour', 'day', 'month'] as const;
export type Period = (typeof PERIODS)[number];

const positive = z.number().positive();
const positiveInt = z.number().int().positive();

export const BudgetSchema = z
  .strictObject({
    scope: z.enum(SCOPES).describe('Who the budget is kept for: the agent, each end user (x-agent-user), each run (x-agent-run-id), or the team.'),
    unit: z.enum(['usd', 'tokens']).describe('usd: cost from the price table. tokens: all four token types together.'),
    period: z.enum(PERIODS).describe('Calendar window in UTC: the budget resets at the start of each minute, hour, day or month.'),
    limit: positive.describe('Cap per window.'),
  })
  .describe('A spending cap per calendar window. Requests reserve their maximum cost up front and settle with the real usage.');

export const RateLimitSchema = z
  .strictObject({
    scope: z.enum(SCOPES),
    unit: z.enum(['requests', 'tokens']).describe('requests per minute, or tokens per minute.'),
    perMinute: positive.describe('Sustained rate; a full minute of it may arrive at once, but never twice that across a boundary (GCRA).'),
  })
  .describe('A rate limit enforced with GCRA: smooth, with no double burst at window boundaries.');

export const LoopGuardSchema = z
  .strictObject({
    maxIterations: positiveInt.optional().describe('LLM calls per run.'),
    maxTokens: positiveInt.optional().describe('Tokens per run, all types.'),
    maxCostUsd: positive.optional().describe('Cost per run.'),
    maxDurationMs: positiveInt.optional().describe('Wall time from a run\'s first call.'),
    maxRepeats: z
      .number()
      .int()
      .min(2)
      .optional()
      .describe('Stuck-loop detector: the same request content this many times in a row within a run trips the guard.'),
    runTtlMs: positiveInt.default(86_400_000).describe('How long a run\'s state is kept after its last call.'),
  })
  .describe('Guards per agent run (x-agent-run-id). A tripped guard answers loop_detected.');

/** A Redis URL without credentials (they go in username/password). */
export const REDIS_URL = /^rediss?:\/\/[^/\s@]+(\/\d{1,2})?$/;
export const REDIS_URL_ERROR = 'must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB] (TLS), without credentials';

/** Whether the runtime can connect to this URL: the shape above, and a host and port it can parse (a port up to 65535). */
export function isRedisUrl(value: string): boolean {
  if (!REDIS_URL.test(value)) return false;
  try {
    return new URL(value).hostname !== '';
  } catch {
    return false;
  }
}

/** An absolute http(s) URL the runtime can parse and call. */
function isCallableUrl(value: string): boolean {
  if (!/^https?:\/\/[^\s]+$/.test(value)) return false;
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

export const StoreSchema = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('memory') }),
    z.strictObject({
      type: z.literal('redis'),
      url: z
        .union([
          z.string().refine(isRedisUrl, { error: REDIS_URL_ERROR }),
          SecretRefSchema.describe('A file or variable holding the URL: for endpoints known only once the cloud side is applied.'),
        ])
        .describe('redis://host:6379/0, or rediss:// for TLS, or a reference to one. Credentials go in username/password.'),
      username: z.string().min(1).optional().describe('ACL user (Redis 6+).'),
      password: SecretRefSchema.optional().describe('AUTH password or token, by reference.'),
      tls: z
        .strictObject({
          caFile: z.string().regex(/^\//, { error: 'must be an absolute file path' }).optional().describe('PEM bundle to trust instead of the system CAs.'),
          serverName: z.string().min(1).optional(),
        })
        .optional(),
      keyPrefix: z.string().min(1).default('cdka:'),
      commandTimeoutMs: positiveInt.default(250).describe('A store call slower than this counts as the store being unavailable.'),
      onUnavailable: z
        .enum(['fail-closed', 'fail-open', 'local'])
        .default('fail-closed')
        .describe('When Redis cannot be reached: reject (503 budget_store_unavailable), allow unenforced, or enforce per process.'),
    }),
  ])
  .describe('Where budgets, rate limits, run state and pending approvals live.');

export const ACTIONS = ['block', 'redact', 'warn', 'off'] as const;
export type GuardrailAction = (typeof ACTIONS)[number];

export const DenyPatternSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9_.-]{1,40}$/, { error: 'must be 1-40 of a-z 0-9 _ . -' }),
    pattern: z.string().min(1).refine((p) => isRegex(p, ''), { error: 'must be a valid JavaScript regular expression' }),
    flags: z.string().regex(/^[imsu]*$/, { error: 'may only use the flags i, m, s, u' }).default('i'),
    action: z.enum(['block', 'warn']).default('block'),
  })
  // The runtime compiles the pattern with its flags: with "u", a pattern valid without it (a{, \-) is an error.
  .superRefine(
    (value, ctx) => {
      const { pattern, flags } = value as { pattern?: unknown; flags?: unknown };
      if (typeof pattern !== 'string' || typeof flags !== 'string' || !/^[imsu]*$/.test(flags) || !isRegex(pattern, '')) return;
      if (!isRegex(pattern, flags)) {
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: `must be a valid JavaScript regular expression with the flags "${flags}"` });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

function isRegex(pattern: string, flags: string): boolean {
  try {
    new RegExp(pattern, flags);
    return true;
  } catch {
    return false;
  }
}

export const GuardrailsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('false switches every guardrail off.'),
    input: z
      .strictObject({
        maxBytes: positiveInt.default(1_048_576).describe('Largest request body (rule input.max_bytes).'),
        maxMessages: positiveInt.default(1_000).describe('Most messages in a request (rule input.max_messages).'),
        maxPromptTokens: positiveInt.default(400_000).describe('Largest estimated prompt (rule input.max_prompt_tokens).'),
        injectionWarnScore: z.number().min(0).max(1).default(0.4).describe('Injection score from which a warning is recorded.'),
        injectionBlockScore: z.number().min(0).max(1).default(0.75).describe('Injection score from which the request is blocked, when input.injection acts "block".'),
        scanToolResults: z.boolean().default(true).describe('Scan tool results sent back to the model for indirect injection.'),
        denyPatterns: z.array(DenyPatternSchema).default([]).describe('Regular expressions refused in new input (rules input.deny.<id>).'),
      })
      .prefault({}),
    output: z
      .strictObject({
        pii: z.boolean().default(false).describe('Look for PII in answers: email, credit card (Luhn), IBAN (mod 97), US SSN, IPv4.'),
        phone: z.boolean().default(false).describe('Also phone numbers (noisy, so separately opt-in).'),
      })
      .prefault({}),
    actions: z
      .record(z.string().regex(/^(input|output)\.[a-z0-9_.-]+$/, { error: 'must be a rule id such as output.secret.jwt' }), z.enum(ACTIONS))
      .default({})
      .describe('Per-rule actions overriding the defaults (see README: guardrail rules).'),
  })
  .describe('Input and output guardrails.');

export const ToolSchema = z
  .strictObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, { error: 'must be 1-64 of letters, digits, _ and - (the function-name rule of the LLM APIs)' }),
    endpoint: z.string().refine(isCallableUrl, { error: 'must be an absolute http(s) URL' }).describe('Where POST /tools/{name} is forwarded.'),
    timeoutMs: positiveInt.default(30_000),
    requiresApproval: z.boolean().default(false).describe('Hold each call until an approver approves it.'),
    approvalTtlMs: positiveInt.default(3_600_000).describe('A pending call not decided within this time expires and never runs.'),
    maxBodyBytes: positiveInt.default(1_048_576),
  })
  .describe('A tool the agent calls through the runtime.');

export const AuditSchema = z
  .strictObject({
    file: z.string().regex(/^\//, { error: 'must be an absolute file path' }).optional().describe('Also append records to this file.'),
    captureContent: z.boolean().default(false).describe('Record prompts and answers verbatim instead of their sha256.'),
  })
  .describe('One hash-chained JSON line per request and per decision, on stdout.');

export const ReservationSchema = z.strictObject({
  defaultMaxOutputTokens: positiveInt.default(4_096).describe('Output tokens reserved for a request that sets no max_tokens.'),
});

export type Budget = z.output<typeof BudgetSchema>;
export type RateLimit = z.output<typeof RateLimitSchema>;
export type LoopGuard = z.output<typeof LoopGuardSchema>;
export type StoreConfig = z.output<typeof StoreSchema>;
export type GuardrailsConfig = z.output<typeof GuardrailsSchema>;
export type ToolConfig = z.output<typeof ToolSchema>;
export type AuditConfig = z.output<typeof AuditSchema>;
