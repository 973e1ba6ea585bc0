/**
 * The audit log a sidecar process wrote on stdout, for assertions: its records parsed, and the
 * captured chain checked by the runtime's own `verify-audit` command.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Sidecar, sleep } from './sidecar';

/** An audit record: the members tests look at, and whatever else it carries. */
export interface AuditRecord {
  readonly kind: string;
  readonly 'user.id'?: string;
  readonly 'http.response.status_code'?: number;
  readonly 'gen_ai.security.decision.type'?: string;
  readonly 'gen_ai.security.policy.id'?: string;
  readonly 'gen_ai.provider.name'?: string;
  readonly 'gen_ai.usage.input_tokens'?: number;
  readonly 'gen_ai.usage.output_tokens'?: number;
  readonly usage_estimated?: boolean;
  readonly cost_usd?: number;
  readonly attempts?: number;
  readonly failures?: string[];
  readonly [member: string]: unknown;
}

/** Every record the sidecar has written so far (stdout carries nothing else). */
export function auditRecords(sidecar: Sidecar): AuditRecord[] {
  return sidecar.stdout.map((line) => JSON.parse(line) as AuditRecord);
}

/** The llm.request records of one end user (x-agent-user), in order. */
export function requestRecords(sidecar: Sidecar, user: string): AuditRecord[] {
  return auditRecords(sidecar).filter((r) => r.kind === 'llm.request' && r['user.id'] === user);
}

/** Waits until `count` llm.request records of `user` are written (a record follows its response by a turn). */
export async function waitForRequestRecords(sidecar: Sidecar, user: string, count: number, timeoutMs = 5_000): Promise<AuditRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = requestRecords(sidecar, user);
    if (records.length >= count) return records;
    if (Date.now() > deadline) throw new Error(`expected ${count} llm.request record(s) of ${user}, found ${records.length}:\n${sidecar.stdout.join('\n')}`);
    await sleep(20);
  }
}

/** Tokens a record billed, all types: what a tokens budget was settled with. */
export function billedTokens(record: AuditRecord): number {
  return (record['gen_ai.usage.input_tokens'] ?? 0) + (record['gen_ai.usage.output_tokens'] ?? 0);
}

/** Writes the captured stdout to a file and runs `sidecar.js verify-audit` on it. */
export async function verifyCapturedAudit(sidecar: Sidecar): Promise<{ code: number | null; stdout: string; stderr: string; records: number }> {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'cdk-agents-audit-')), 'stdout.jsonl');
  const lines = [...sidecar.stdout];
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
  return { ...(await Sidecar.run(['verify-audit', file])), records: lines.length };
}

/** The captured stdout is one intact chain, as `verify-audit` says, whatever the test did. */
export async function expectIntactAuditChain(sidecar: Sidecar): Promise<void> {
  const verified = await verifyCapturedAudit(sidecar);
  expect({ code: verified.code, stderr: verified.stderr, stdout: verified.stdout }).toEqual({
    code: 0,
    stderr: '',
    stdout: expect.stringContaining(`intact, ${verified.records} records in 1 chain`),
  });
}
