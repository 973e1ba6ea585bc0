/**
 * Sidecar-to-gateway authentication. The sidecar signs each request with its agent's key
 * (HMAC-SHA256 over the method, path, time, a nonce, the agent's identity and a digest of the
 * body); the gateway, holding every connected agent's key, verifies it. An agent container never
 * holds the key (only its sidecar container mounts it), so it cannot forge its identity headers;
 * a captured request cannot be replayed (time window plus nonce) or altered (body digest).
 */
import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SecretValue } from '../secrets';

export const SIGNATURE_HEADERS = {
  agent: 'x-cdk-agents-agent',
  timestamp: 'x-cdk-agents-timestamp',
  nonce: 'x-cdk-agents-nonce',
  signature: 'x-cdk-agents-signature',
  user: 'x-agent-user',
  run: 'x-agent-run-id',
} as const;

const VERSION = 'v1';

export interface SignedIdentity {
  readonly agent: string;
  readonly user?: string;
  readonly run?: string;
}

function canonical(method: string, path: string, timestamp: string, nonce: string, id: SignedIdentity, body: Buffer | null): string {
  const digest = hash('sha256', body ?? Buffer.alloc(0), 'hex');
  return `cdk-agents-${VERSION}\n${method}\n${path}\n${timestamp}\n${nonce}\n${id.agent}\n${id.user ?? ''}\n${id.run ?? ''}\n${digest}`;
}

function mac(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}

/** The header lines (`name: value\r\n`) that authenticate a request to a gateway. */
export function signatureLines(key: string, method: string, path: string, id: SignedIdentity, body: Buffer | null, now = Date.now()): string {
  const timestamp = String(now);
  const nonce = randomBytes(12).toString('base64url');
  const signature = mac(key, canonical(method, path, timestamp, nonce, id, body));
  let lines =
    `${SIGNATURE_HEADERS.agent}: ${id.agent}\r\n${SIGNATURE_HEADERS.timestamp}: ${timestamp}\r\n` +
    `${SIGNATURE_HEADERS.nonce}: ${nonce}\r\n${SIGNATURE_HEADERS.signature}: ${VERSION}=${signature}\r\n`;
  if (id.user !== undefined) lines += `${SIGNATURE_HEADERS.user}: ${id.user}\r\n`;
  if (id.run !== undefined) lines += `${SIGNATURE_HEADERS.run}: ${id.run}\r\n`;
  return lines;
}

export interface GatewayAgent {
  readonly name: string;
  readonly team?: string;
  readonly key: SecretValue;
}

export type Verification =
  | { readonly ok: true; readonly agent: GatewayAgent; readonly user?: string; readonly run?: string }
  | { readonly ok: false; readonly reason: string };

/** The gateway's side: checks signatures and refuses replays seen within the time window. */
export class SignatureVerifier {
  private readonly agents: Map<string, GatewayAgent>;
  private readonly seen = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    agents: readonly GatewayAgent[],
    private readonly maxSkewMs: number,
  ) {
    this.agents = new Map(agents.map((a) => [a.name, a]));
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.max(1_000, maxSkewMs));
    this.sweeper.unref();
  }

  verify(headers: Record<string, string | string[] | undefined>, method: string, path: string, body: Buffer | null, now = Date.now()): Verification {
    const get = (name: string): string | undefined => {
      const v = headers[name];
      return Array.isArray(v) ? undefined : v;
    };
    const agentName = get(SIGNATURE_HEADERS.agent);
    const timestamp = get(SIGNATURE_HEADERS.timestamp);
    const nonce = get(SIGNATURE_HEADERS.nonce);
    const signature = get(SIGNATURE_HEADERS.signature);
    if (!agentName || !timestamp || !nonce || !signature) return { ok: false, reason: 'the request is not signed (a sidecar connected to this gateway signs every request)' };
    const agent = this.agents.get(agentName);
    if (!agent) return { ok: false, reason: `agent ${JSON.stringify(agentName.slice(0, 64))} is not connected to this gateway` };
    const at = Number(timestamp);
    if (!Number.isFinite(at) || Math.abs(now - at) > this.maxSkewMs) return { ok: false, reason: 'the signature is outside the time window (clock skew or a replay)' };
    if (!signature.startsWith(`${VERSION}=`)) return { ok: false, reason: 'unknown signature version' };
    const id = { agent: agentName, user: get(SIGNATURE_HEADERS.user), run: get(SIGNATURE_HEADERS.run) };
    const expected = Buffer.from(mac(agent.key.value, canonical(method, path, timestamp, nonce, id, body)));
    const given = Buffer.from(signature.slice(VERSION.length + 1));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'the signature does not match (wrong key, or the request was altered)' };
    const replayKey = `${agentName}\u0000${nonce}`;
    if (this.seen.has(replayKey)) return { ok: false, reason: 'the request was already used (replay)' };
    this.seen.set(replayKey, at + this.maxSkewMs);
    return { ok: true, agent, user: id.user, run: id.run };
  }

  private sweep(now: number): void {
    for (const [key, expiresAt] of this.seen) if (expiresAt < now) this.seen.delete(key);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
