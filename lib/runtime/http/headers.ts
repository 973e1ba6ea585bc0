/**
 * Header hygiene for a proxy (RFC 9110 7.6.1): hop-by-hop headers stay on their hop, the
 * agent's identity headers stay with us, and credentials are replaced when the runtime holds
 * the provider key.
 */
import type { ResponseHeaders } from './response-parser';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** Not forwarded upstream: recomputed (host, length), negotiated by us (encoding), or ours. */
const REQUEST_DROPPED = new Set([
  ...HOP_BY_HOP,
  'host',
  'content-length',
  'accept-encoding',
  'expect',
  'x-agent-user',
  'x-agent-run-id',
  // A sidecar's signed identity is for the gateway, never for a provider.
  'x-cdk-agents-agent',
  'x-cdk-agents-timestamp',
  'x-cdk-agents-nonce',
  'x-cdk-agents-signature',
]);

const CREDENTIALS = new Set(['authorization', 'x-api-key', 'api-key']);

export interface ForwardedRequestHeaders {
  /** Header lines (`name: value\r\n`) to forward, credentials excluded. */
  readonly lines: string;
  /** The client's own credential lines, forwarded only when the provider key is not ours to inject. */
  readonly credentialLines: string;
  /** Lowercased names present, to avoid adding a header the client already sent. */
  readonly names: ReadonlySet<string>;
}

export function forwardedRequestHeaders(rawHeaders: readonly string[]): ForwardedRequestHeaders {
  let lines = '';
  let credentialLines = '';
  const names = new Set<string>();
  let connectionListed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === 10 && rawHeaders[i].toLowerCase() === 'connection') {
      for (const token of rawHeaders[i + 1].split(',')) (connectionListed ??= new Set()).add(token.trim().toLowerCase());
    }
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (REQUEST_DROPPED.has(name) || connectionListed?.has(name)) continue;
    const line = `${name}: ${rawHeaders[i + 1]}\r\n`;
    if (CREDENTIALS.has(name)) credentialLines += line;
    else {
      lines += line;
      names.add(name);
    }
  }
  return { lines, credentialLines, names };
}

/** Upstream response headers to send to the client, minus hop-by-hop and length (ours to set). */
export function clientResponseHeaders(headers: ResponseHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let connectionListed: string[] | undefined;
  const connection = headers.connection;
  if (typeof connection === 'string') connectionListed = connection.split(',').map((t) => t.trim().toLowerCase());
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || name === 'content-length' || connectionListed?.includes(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

/** Seconds or HTTP-date of a Retry-After header (or Anthropic/OpenAI retry-after-ms), in ms. */
export function retryAfterMs(headers: ResponseHeaders | null, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const value = headers['retry-after'];
  if (typeof value !== 'string') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
