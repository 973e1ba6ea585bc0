/**
 * Checks audit hash chains (format: audit-log.ts): every line's hash matches its bytes, every
 * record's prev is the hash of the line before it, seq counts up by one, and every chain begins
 * with a genuine start record (kind "start", prev AUDIT_GENESIS, seq 0). A file may hold several
 * chains, one per process start. Reports the first broken link by line number.
 */
import { createHash } from 'node:crypto';
import { AUDIT_GENESIS, AUDIT_START } from './audit-log';

export interface AuditVerification {
  readonly ok: boolean;
  /** Records checked (up to the broken one, excluded). */
  readonly records: number;
  /** Chains begun (up to the broken record). */
  readonly chains: number;
  readonly brokenAt?: { line: number; reason: string };
}

const HASH_MEMBER = /,"hash":"(sha256:[0-9a-f]{64})"\}$/;

export function verifyAuditChain(text: string): AuditVerification {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let records = 0;
  let chains = 0;
  let prevHash: string | undefined;
  let prevSeq = -1;
  let prevLine = 0;
  const broken = (line: number, reason: string): AuditVerification => ({ ok: false, records, chains, brokenAt: { line, reason } });

  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i];
    if (!line.trim()) return broken(lineNo, 'empty line (a record was removed or cut)');
    let record: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return broken(lineNo, 'not a JSON object');
      record = parsed as Record<string, unknown>;
    } catch {
      return broken(lineNo, 'not valid JSON (not an audit record, or cut short)');
    }
    const match = HASH_MEMBER.exec(line);
    if (!match || record.hash !== match[1]) return broken(lineNo, 'the record does not end with its hash member');
    const hash = match[1];
    const unsigned = `${line.slice(0, match.index)}}`;
    if (`sha256:${createHash('sha256').update(unsigned).digest('hex')}` !== hash) {
      return broken(lineNo, 'hash mismatch: the record was altered after it was written');
    }
    if (typeof record.seq !== 'number' || typeof record.prev !== 'string') return broken(lineNo, 'seq or prev missing');

    if (record.kind === AUDIT_START) {
      if (record.prev !== AUDIT_GENESIS) return broken(lineNo, 'a start record must begin a chain, but its prev is not the genesis value');
      if (record.seq !== 0) return broken(lineNo, `a start record must have seq 0, not ${record.seq}`);
      chains++;
    } else if (prevHash === undefined) {
      return broken(lineNo, 'the first record of a chain must be a start record (the beginning of the chain is missing)');
    } else if (record.prev === AUDIT_GENESIS) {
      return broken(lineNo, 'only a start record may begin a chain');
    } else if (record.prev !== prevHash) {
      return broken(lineNo, `prev is not the hash of line ${prevLine}: a record was removed, inserted or altered before this one`);
    } else if (record.seq !== prevSeq + 1) {
      return broken(lineNo, `seq ${record.seq} does not follow ${prevSeq}`);
    }
    prevHash = hash;
    prevSeq = record.seq as number;
    prevLine = lineNo;
    records++;
  }
  return { ok: true, records, chains };
}
