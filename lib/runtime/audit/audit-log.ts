/**
 * The audit log: one JSON line per request and per decision, on stdout (the pod's log stream)
 * and optionally appended to a file. Records are hash-chained so that an edited, removed or
 * inserted line is found by `sidecar.js verify-audit FILE`.
 *
 * Record format. Each line is a JSON object that begins `{"time":...,"seq":...,` with the agent
 * and the caller's fields, then `"prev":"sha256:<hex>"` (the previous record's hash), then
 * `"hash":"sha256:<hex>"` as the last member. The hash is the SHA-256 of the line's own bytes
 * with the hash member removed (that is, of the text ending `"prev":"..."}`), so a verifier
 * needs no canonical JSON: it checks the bytes as written. Each process starts a new chain with
 * a record of kind "start" whose prev is AUDIT_GENESIS and whose seq is 0.
 *
 * Attribute names follow the OpenTelemetry GenAI semantic conventions where one exists
 * (AuditAttr); content is recorded as 'sha256:<hex>' unless audit.captureContent is on.
 *
 * Cost: stdout on a pipe is synchronous on Linux, so records are joined and written once per
 * event-loop turn rather than once each; flush() writes what is left at shutdown, and after it
 * records are written as they come so nothing recorded during the exit is lost.
 */
import * as crypto from 'node:crypto';
import { openSync, writeSync } from 'node:fs';
import { log } from '../log';

export type AuditDecision = 'allow' | 'deny' | 'modify' | 'warn';

/** The prev of the first record of every chain. */
export const AUDIT_GENESIS = `sha256:${'0'.repeat(64)}`;

/** The kind of the record that begins a chain. */
export const AUDIT_START = 'start';

/**
 * Attribute names of audit records. OpenTelemetry names (GenAI semantic conventions, and the
 * general user.id, error.type, http.response.status_code) where they exist; our own, short and
 * unprefixed, where they do not. The run (x-agent-run-id) is recorded as the GenAI
 * conversation id, the end user (x-agent-user) as user.id.
 */
export const AuditAttr = {
  /** What the record is: start, stop, llm.request, tool.call, tool.result, approval.decision, approval.expired ... */
  kind: 'kind',
  agent: 'gen_ai.agent.name',
  /** In gateway mode, the calling agent (verified by its signature); gen_ai.agent.name is the gateway. */
  caller: 'gen_ai.agent.id',
  user: 'user.id',
  run: 'gen_ai.conversation.id',
  operation: 'gen_ai.operation.name',
  provider: 'gen_ai.provider.name',
  requestModel: 'gen_ai.request.model',
  responseModel: 'gen_ai.response.model',
  responseId: 'gen_ai.response.id',
  finishReasons: 'gen_ai.response.finish_reasons',
  inputTokens: 'gen_ai.usage.input_tokens',
  outputTokens: 'gen_ai.usage.output_tokens',
  cacheReadTokens: 'gen_ai.usage.cache_read.input_tokens',
  cacheWriteTokens: 'gen_ai.usage.cache_creation.input_tokens',
  /** Request content: the messages as sent (hashed unless captureContent). */
  inputMessages: 'gen_ai.input.messages',
  /** Answer content (hashed unless captureContent). */
  outputMessages: 'gen_ai.output.messages',
  /** allow, deny, modify or warn (AuditDecision). */
  decision: 'gen_ai.security.decision.type',
  /** Why: a human-readable explanation (an approver's reason, a guardrail's finding). */
  reason: 'gen_ai.security.decision.reason',
  /** The rule or policy that decided (input.deny.<id>, budget.usd_per_day, approval ...). */
  rule: 'gen_ai.security.policy.id',
  toolName: 'gen_ai.tool.name',
  toolArguments: 'gen_ai.tool.call.arguments',
  toolResult: 'gen_ai.tool.call.result',
  status: 'http.response.status_code',
  error: 'error.type',
  costUsd: 'cost_usd',
  latencyMs: 'latency_ms',
} as const;

export interface AuditLogOptions {
  readonly agent: string;
  readonly mode: string;
  /** Also append records to this file (opened on the first write). */
  readonly file?: string;
  readonly captureContent: boolean;
  /** Where records go. Default: process.stdout. */
  readonly out?: NodeJS.WritableStream;
}

/** SHA-256 in hex: the one-shot crypto.hash (Node >= 20.12) costs half of a Hash object per record. */
const sha256Hex: (data: string | Buffer) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (data) => (crypto as unknown as { hash(algorithm: string, data: string | Buffer, encoding: 'hex'): string }).hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data).digest('hex');

/** Members the log sets itself; a caller's fields by these names are dropped. */
const RESERVED = ['time', 'seq', 'prev', 'hash', AuditAttr.agent] as const;

export class AuditLog {
  private readonly out: NodeJS.WritableStream;
  private readonly agentJson: string;
  private prev = AUDIT_GENESIS;
  private seq = 0;
  private buffer = '';
  private scheduled: NodeJS.Immediate | null = null;
  /** Set by flush(): from then on every record is written at once. */
  private closing = false;
  private fd: number | undefined;
  private fileFailed = false;
  private outFailed = false;
  private lastMs = 0;
  private lastIso = '';

  constructor(private readonly options: AuditLogOptions) {
    this.out = options.out ?? process.stdout;
    this.agentJson = JSON.stringify(options.agent);
    const emitter = this.out as Partial<NodeJS.EventEmitter>;
    emitter.on?.('error', (err: Error) => {
      if (this.outFailed) return;
      this.outFailed = true;
      log.error('audit records cannot be written to their output', { error: err.message });
    });
    // A crash between a record and the end of its turn must not lose it (writes here are synchronous).
    if (this.out === process.stdout) process.once('exit', () => this.writeBuffered());
  }

  /** Appends a record; adds time, seq, prev, hash. Cheap on the request path. */
  record(fields: Record<string, unknown>): void {
    if (fields.kind === AUDIT_START) {
      // A start record always begins a new chain (a verifier accepts it only as a chain start).
      this.prev = AUDIT_GENESIS;
      this.seq = 0;
    } else if (this.seq === 0) {
      this.append({ kind: AUDIT_START, mode: this.options.mode, pid: process.pid });
    }
    this.append(fields);
  }

  /** 'sha256:<hex>' of the content, or the content itself (as UTF-8 text) when captureContent is on. */
  content(data: string | Buffer): string {
    if (this.options.captureContent) return typeof data === 'string' ? data : data.toString('utf8');
    return `sha256:${sha256Hex(data)}`;
  }

  /** Whether content is recorded verbatim (callers then keep what they would otherwise hash). */
  get capturesContent(): boolean {
    return this.options.captureContent;
  }

  /** Writes everything still buffered (used at shutdown, then the process exits). */
  async flush(): Promise<void> {
    this.closing = true;
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    const chunk = this.takeBuffer();
    if (chunk) this.writeFile(chunk);
    const out = this.out as NodeJS.WritableStream & { writableLength?: number };
    await new Promise<void>((resolve) => {
      if (chunk) {
        out.write(chunk, () => resolve());
      } else if (out.writableLength) {
        out.once('drain', resolve);
      } else {
        resolve();
      }
    });
  }

  /**
   * Appends a record given as JSON members (`"kind":"llm.request","a":1`, no braces), for the
   * record written on every request: built as text by the caller, it skips an object and a
   * JSON.stringify. The members must not use the log's own names (time, seq, prev, hash, agent).
   */
  recordMembers(members: string): void {
    if (this.seq === 0) this.append({ kind: AUDIT_START, mode: this.options.mode, pid: process.pid });
    this.appendMembers(`,${members}`);
  }

  private append(fields: Record<string, unknown>): void {
    let body: string;
    try {
      body = JSON.stringify(hasReserved(fields) ? withoutReserved(fields) : fields);
    } catch (err) {
      // A record is never lost to a value JSON cannot hold (a cycle, a BigInt): its kind and why remain.
      body = JSON.stringify({ kind: fields.kind, 'audit.error': `fields not serializable: ${(err as Error).message}` });
    }
    this.appendMembers(body.length > 2 ? `,${body.slice(1, -1)}` : '');
  }

  private appendMembers(body: string): void {
    const unsigned = `{"time":"${this.now()}","seq":${this.seq},"${AuditAttr.agent}":${this.agentJson}${body},"prev":"${this.prev}"}`;
    const hash = `sha256:${sha256Hex(unsigned)}`;
    this.prev = hash;
    this.seq++;
    this.buffer += `${unsigned.slice(0, -1)},"hash":"${hash}"}\n`;
    if (this.closing) this.writeBuffered();
    else if (!this.scheduled) this.scheduled = setImmediate(this.onTurn);
  }

  /** The time as ISO 8601, formatted once per millisecond (records come in bursts). */
  private now(): string {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = new Date(ms).toISOString();
    }
    return this.lastIso;
  }

  private readonly onTurn = (): void => {
    this.scheduled = null;
    this.writeBuffered();
  };

  private takeBuffer(): string {
    const chunk = this.buffer;
    this.buffer = '';
    return chunk;
  }

  private writeBuffered(): void {
    const chunk = this.takeBuffer();
    if (!chunk) return;
    this.writeFile(chunk);
    this.out.write(chunk);
  }

  /** Appends synchronously: the file then holds every record the process has written out. */
  private writeFile(chunk: string): void {
    const file = this.options.file;
    if (!file) return;
    try {
      if (this.fd === undefined) this.fd = openSync(file, 'a', 0o640);
      const bytes = Buffer.from(chunk, 'utf8');
      let written = 0;
      while (written < bytes.length) written += writeSync(this.fd, bytes, written);
      if (this.fileFailed) {
        this.fileFailed = false;
        log.info('audit file writable again', { file });
      }
    } catch (err) {
      if (!this.fileFailed) {
        this.fileFailed = true;
        log.error('audit records cannot be appended to the audit file; they still go to stdout', {
          file,
          error: (err as NodeJS.ErrnoException).code ?? (err as Error).message,
        });
      }
    }
  }
}

function hasReserved(fields: Record<string, unknown>): boolean {
  for (const key of RESERVED) if (key in fields) return true;
  return false;
}

function withoutReserved(fields: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) if (!(RESERVED as readonly string[]).includes(key)) copy[key] = fields[key];
  return copy;
}
