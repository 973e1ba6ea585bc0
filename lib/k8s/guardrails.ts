/** Input and output guardrails: on by default (the runtime's defaults), tuned with typed options. */
import type { Size } from 'cdk8s';
import type { SidecarConfigInput } from '../spec';

type GuardrailsInput = NonNullable<SidecarConfigInput['guardrails']>;

/** What a guardrail rule does when it fires. */
export enum GuardrailAction {
  BLOCK = 'block',
  REDACT = 'redact',
  WARN = 'warn',
  OFF = 'off',
}

/** A regular expression refused in new input (rule `input.deny.<id>`). */
export interface DenyPattern {
  /** Rule id suffix: 1-40 of a-z 0-9 _ . - */
  readonly id: string;
  /** A JavaScript regular expression (source). */
  readonly pattern: string;
  /**
   * Regular expression flags (i, m, s, u).
   * @default 'i'
   */
  readonly flags?: string;
  /**
   * BLOCK or WARN.
   * @default GuardrailAction.BLOCK
   */
  readonly action?: GuardrailAction;
}

/** Options for `Guardrails.of`; anything left out keeps the runtime's default. */
export interface GuardrailsOptions {
  /**
   * Block requests whose prompt-injection score reaches `injectionBlockScore` (otherwise they are only recorded).
   * @default false
   */
  readonly blockInjection?: boolean;
  /**
   * Injection score from which a warning is recorded (0-1).
   * @default 0.4
   */
  readonly injectionWarnScore?: number;
  /**
   * Injection score from which a request is blocked when `blockInjection` is on (0-1).
   * @default 0.75
   */
  readonly injectionBlockScore?: number;
  /**
   * Scan tool results sent back to the model for indirect injection.
   * @default true
   */
  readonly scanToolResults?: boolean;
  /**
   * Redact personal data in answers: email, credit card, IBAN, US SSN, IPv4.
   * @default false
   */
  readonly redactPii?: boolean;
  /**
   * Also redact phone numbers (noisy, so separately opt-in).
   * @default false
   */
  readonly redactPhoneNumbers?: boolean;
  /**
   * Largest request body.
   * @default Size.mebibytes(1)
   */
  readonly maxRequestSize?: Size;
  /**
   * Most messages in a request.
   * @default 1000
   */
  readonly maxMessages?: number;
  /**
   * Largest estimated prompt, in tokens.
   * @default 400000
   */
  readonly maxPromptTokens?: number;
  /**
   * Regular expressions refused in new input.
   * @default - none
   */
  readonly denyPatterns?: DenyPattern[];
  /**
   * Per-rule actions (rule ids as in the README: `output.pii.email`, `input.injection` ...).
   * @default - the defaults of each rule
   */
  readonly ruleActions?: { readonly [ruleId: string]: GuardrailAction };
}

export class Guardrails {
  /** The runtime's defaults: size limits and secret redaction block/redact, injection warns. */
  public static defaults(): Guardrails {
    return new Guardrails({});
  }

  /** Every guardrail off (audit and metering stay on). */
  public static disabled(): Guardrails {
    return new Guardrails({ enabled: false });
  }

  /** The defaults, tuned. */
  public static of(options: GuardrailsOptions): Guardrails {
    const actions: Record<string, GuardrailAction> = { ...options.ruleActions };
    if (options.blockInjection) actions['input.injection'] ??= GuardrailAction.BLOCK;
    return new Guardrails({
      input: {
        maxBytes: options.maxRequestSize ? options.maxRequestSize.toKibibytes() * 1024 : undefined,
        maxMessages: options.maxMessages,
        maxPromptTokens: options.maxPromptTokens,
        injectionWarnScore: options.injectionWarnScore,
        injectionBlockScore: options.injectionBlockScore,
        scanToolResults: options.scanToolResults,
        denyPatterns: options.denyPatterns?.map((p) => ({ id: p.id, pattern: p.pattern, flags: p.flags, action: p.action as 'block' | 'warn' | undefined })),
      },
      output: { pii: options.redactPii, phone: options.redactPhoneNumbers },
      actions: Object.keys(actions).length ? actions : undefined,
    });
  }

  private constructor(private readonly config: GuardrailsInput) {}

  /** @internal */
  public _toConfig(): GuardrailsInput {
    return structuredClone(this.config);
  }
}
