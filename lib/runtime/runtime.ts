/**
 * The running process: config resolved into providers, metrics and listeners; graceful drain.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigValidationError, formatPath, type ConfigIssue, type SecretRef, type SidecarConfig } from '../spec/config';
import { speaksNatively, type ApiShape } from '../spec/providers';
import { isRedisUrl, REDIS_URL_ERROR } from '../spec/policy';
import { AuditLog } from './audit/audit-log';
import type { Exchange } from './exchange';
import { InFlightList } from './in-flight';
import { log } from './log';
import { RuntimeMetrics } from './metering/metrics';
import { PriceBook } from './metering/price-book';
import { SecretValue } from './secrets';
import { InputGuard } from './guardrails/input-guard';
import { FrontServer } from './http/front-server';
import { OutputGuard } from './guardrails/output-guard';
import { MemoryResponseCache, RedisResponseCache, type ResponseCache } from './cache/response-cache';
import { PolicyEngine } from './policy/policy-engine';
import { adminHandler, proxyHandler, type ServerContext } from './server';
import { parseRedisUrl, RedisClient } from './store/redis-client';
import { ToolGateway } from './tools/tool-gateway';
import { UpstreamProvider } from './upstream/provider';
import { SignatureVerifier, type GatewayAgent } from './upstream/signing';

const STORE_WAIT_MS = 3_000;

export const RUNTIME_VERSION = process.env.CDK_AGENTS_BUILD_VERSION ?? 'dev';

export class Runtime implements ServerContext {
  readonly agent: string;
  readonly metrics: RuntimeMetrics;
  readonly prices: PriceBook;
  readonly providers: Record<ApiShape, UpstreamProvider[]>;
  readonly otherShape: Record<ApiShape, UpstreamProvider[]>;
  readonly inFlight = new InFlightList<Exchange>();
  readonly policy: PolicyEngine;
  readonly inputGuard: InputGuard;
  readonly outputGuard: OutputGuard;
  /** The shared store's connection, when the config names Redis. */
  readonly redis: RedisClient | null;
  readonly audit: AuditLog;
  readonly tools: ToolGateway;
  readonly verifier: SignatureVerifier | null;
  readonly cache: ResponseCache | null;
  draining = false;
  ready = false;
  private proxy: FrontServer | undefined;
  private admin: http.Server | undefined;
  private ticker: NodeJS.Timeout | undefined;

  /**
   * Builds the runtime from a validated config, resolving secrets. Every secret that cannot be
   * read is reported, by config path, in one ConfigValidationError.
   */
  static create(config: SidecarConfig, env: NodeJS.ProcessEnv = process.env): Runtime {
    const issues: ConfigIssue[] = [];
    const secret = (ref: SecretRef | undefined, path: PropertyKey[]): SecretValue | undefined => {
      if (!ref) return undefined;
      const resolved = SecretValue.resolve(ref, formatPath(path), env);
      if (resolved instanceof SecretValue) return resolved;
      issues.push(resolved);
      return undefined;
    };
    // A provider's key is its API key, or for a gateway the key the sidecar signs with.
    const keys = config.providers.map((p, i) =>
      p.signingKey ? secret(p.signingKey, ['providers', i, 'signingKey']) : secret(p.apiKey, ['providers', i, 'apiKey']),
    );
    const gatewayAgents = (config.gateway?.agents ?? []).map((a, i) => ({ name: a.name, team: a.team, key: secret(a.signingKey, ['gateway', 'agents', i, 'signingKey'])! }));
    const store = config.store;
    const redisPassword = store.type === 'redis' ? secret(store.password, ['store', 'password']) : undefined;
    let redisUrl: string | undefined;
    if (store.type === 'redis') {
      // A referenced URL is read once, at start: an endpoint the cloud side wrote at apply time.
      redisUrl = typeof store.url === 'string' ? store.url : secret(store.url, ['store', 'url'])?.value;
      if (redisUrl !== undefined && typeof store.url !== 'string' && !isRedisUrl(redisUrl)) {
        issues.push({ path: 'store.url', message: `the referenced value ${REDIS_URL_ERROR}` });
      }
    }
    let redisCa: string | undefined;
    if (store.type === 'redis' && store.tls?.caFile) {
      try {
        redisCa = readFileSync(store.tls.caFile, 'utf8');
      } catch (err) {
        issues.push({ path: 'store.tls.caFile', message: `cannot read ${store.tls.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      }
    }
    const approvalToken = config.approvals ? secret(config.approvals.token, ['approvals', 'token']) : undefined;
    if (issues.length) throw new ConfigValidationError(issues);
    return new Runtime(config, keys, { url: redisUrl, password: redisPassword, ca: redisCa }, approvalToken, gatewayAgents);
  }

  private constructor(
    readonly config: SidecarConfig,
    keys: Array<SecretValue | undefined>,
    redisSecrets: { url?: string; password?: SecretValue; ca?: string },
    approvalToken: SecretValue | undefined,
    gatewayAgents: GatewayAgent[],
  ) {
    this.agent = config.agent?.name ?? 'gateway';
    this.prices = new PriceBook(config.prices);
    const all = config.providers.map((p, i) => new UpstreamProvider(p, config, keys[i]));
    this.providers = {
      openai: all.filter((p) => speaksNatively(p.type, 'openai')),
      anthropic: all.filter((p) => speaksNatively(p.type, 'anthropic')),
    };
    this.otherShape = {
      openai: all.filter((p) => !speaksNatively(p.type, 'openai') && p.servesOtherShape),
      anthropic: all.filter((p) => !speaksNatively(p.type, 'anthropic') && p.servesOtherShape),
    };
    this.verifier = config.gateway ? new SignatureVerifier(gatewayAgents, config.gateway.maxClockSkewMs) : null;
    this.metrics = new RuntimeMetrics(config.limits.maxModelLabels, { version: RUNTIME_VERSION, mode: config.mode }, () => {
      const now = Date.now();
      return all.map((p) => ({ provider: p.name, open: p.health.isOpen(now) }));
    });
    this.redis = config.store.type === 'redis' ? connectRedis(config.store, redisSecrets) : null;
    if (this.redis) {
      const redis = this.redis;
      this.metrics.watchStore(() => redis.isUp);
    }
    this.policy = new PolicyEngine(config, this.metrics, this.redis);
    if (config.budgets.some((b) => b.scope === 'agent' || b.scope === 'team')) {
      const served = config.gateway ? config.gateway.agents.map((a) => ({ agent: a.name, team: a.team })) : [{ agent: this.agent, team: config.agent?.team }];
      const policy = this.policy;
      this.metrics.watchBudgets(() => policy.budgetUsage(served));
    }
    this.cache = !config.cache
      ? null
      : this.redis && config.store.type === 'redis'
        ? new RedisResponseCache(config.cache, this.redis, config.store.keyPrefix)
        : new MemoryResponseCache(config.cache);
    this.inputGuard = new InputGuard(config.guardrails);
    this.outputGuard = new OutputGuard(config.guardrails);
    this.audit = new AuditLog({ agent: this.agent, mode: config.mode, file: config.audit.file, captureContent: config.audit.captureContent });
    this.tools = new ToolGateway({ config, agent: this.agent, metrics: this.metrics, audit: this.audit, approvalToken, redis: this.redis, isDraining: () => this.draining });
  }

  /** Starts listening; resolves with the bound addresses. */
  async start(): Promise<{ proxy: AddressInfo; admin?: AddressInfo }> {
    const { timeouts, listen, admin } = this.config;
    this.proxy = new FrontServer(
      { headersTimeoutMs: timeouts.requestHeadersMs, requestTimeoutMs: timeouts.requestBodyMs, keepAliveTimeoutMs: 65_000 },
      proxyHandler(this),
    );
    const proxyAddress = await listenOn(this.proxy, listen.host, listen.port);
    this.audit.record({ kind: 'start', version: RUNTIME_VERSION, mode: this.config.mode, pid: process.pid, proxy: `${proxyAddress.address}:${proxyAddress.port}` });
    let adminAddress: AddressInfo | undefined;
    if (admin) {
      this.admin = http.createServer({ headersTimeout: 5_000, requestTimeout: 10_000 }, adminHandler(this));
      adminAddress = await listenOn(this.admin, admin.host, admin.port);
    }
    // One ticker applies every in-flight request's timeouts, to a twentieth of the shortest.
    const tickMs = Math.max(5, Math.min(250, Math.floor(Math.min(timeouts.firstByteMs, timeouts.idleMs, timeouts.totalMs) / 20)));
    this.ticker = setInterval(() => {
      const now = performance.now();
      for (const exchange of this.inFlight) exchange.checkTimeouts(now);
    }, tickMs);
    this.ticker.unref();
    // Ready once the shared store answers, so the first requests are not refused by fail-closed;
    // a store still down after a few seconds leaves readiness to the failure mode (never blocked).
    if (this.redis && !(await this.redis.waitUntilUp(STORE_WAIT_MS))) {
      log.warn('starting without the budget store', { error: this.redis.error, onUnavailable: this.config.store.type === 'redis' ? this.config.store.onUnavailable : undefined });
    }
    this.ready = true;
    return { proxy: proxyAddress, admin: adminAddress };
  }

  /**
   * Stops taking requests, lets in-flight ones finish for up to `shutdown.drainMs`, then cuts the
   * rest (billing what they used). Resolves when nothing is left running.
   */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.proxy?.close();
    this.proxy?.closeIdleConnections();
    const deadline = Date.now() + this.config.shutdown.drainMs;
    while ((this.inFlight.size || this.tools.inFlight) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, deadline - Date.now())));
      // Connections whose response just ended must not carry another request.
      this.proxy?.closeIdleConnections();
    }
    if (this.inFlight.size) {
      log.warn('drain deadline reached; cutting requests still in flight', { count: this.inFlight.size });
      for (const exchange of [...this.inFlight]) exchange.terminate();
    }
    if (this.tools.inFlight) await this.tools.abort();
    // The requests that ended (cut ones included) settled their reservations: let that reach
    // the shared store before its connection closes, or their reservations stay counted in full.
    await this.policy.flush();
    this.proxy?.closeAllConnections();
    if (this.ticker) clearInterval(this.ticker);
    this.admin?.close();
    this.admin?.closeAllConnections();
    this.close();
    this.audit.record({ kind: 'stop' });
    await this.audit.flush();
  }

  /**
   * Releases what creating the runtime opened (the Redis connection, provider pools, timers),
   * so the process can exit: at the end of a drain, and after `--check`, which creates the
   * runtime to resolve its secrets but serves nothing.
   */
  close(): void {
    for (const p of [...this.providers.openai, ...this.providers.anthropic]) p.close();
    this.policy.close();
    this.verifier?.close();
    this.tools.close();
    this.redis?.close();
  }
}

function connectRedis(store: Extract<SidecarConfig['store'], { type: 'redis' }>, secrets: { url?: string; password?: SecretValue; ca?: string }): RedisClient {
  const url = parseRedisUrl(secrets.url!);
  return new RedisClient({
    host: url.host,
    port: url.port,
    db: url.db,
    tls: url.tls ? { ca: secrets.ca, servername: store.tls?.serverName } : undefined,
    username: store.username,
    password: secrets.password ? () => secrets.password!.value : undefined,
    commandTimeoutMs: store.commandTimeoutMs,
    onStateChange: (up, error) =>
      up
        ? log.info('budget store connected', { url: secrets.url })
        : log.warn('budget store unreachable', { url: secrets.url, error, onUnavailable: store.onUnavailable }),
  });
}

function listenOn(server: http.Server | FrontServer, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
