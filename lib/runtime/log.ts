/**
 * Diagnostics: one JSON line each, to stderr. Stdout carries only audit records, so what a pod
 * prints there stays a verifiable chain.
 */

type Fields = Record<string, unknown>;

function write(level: string, msg: string, fields?: Fields): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

export const log = {
  info: (msg: string, fields?: Fields) => write('info', msg, fields),
  warn: (msg: string, fields?: Fields) => write('warn', msg, fields),
  error: (msg: string, fields?: Fields) => write('error', msg, fields),
};
