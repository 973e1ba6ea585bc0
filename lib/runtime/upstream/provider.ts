/**
 * A configured provider at run time: its connection pool, health, URL layout and credentials.
 */
import type { ProviderConfig, SidecarConfig } from '../../spec/config';
import { apiShapeOf, DEFAULT_BASE_URLS, type ApiShape, type ProviderType } from '../../spec/providers';
import { OriginPool } from '../http/origin-pool';
import type { SecretValue } from '../secrets';
import { ProviderHealth } from './health';
import { signatureLines, type SignedIdentity } from './signing';

const ANTHROPIC_VERSION = '2023-06-01';

export class UpstreamProvider {
  readonly name: string;
  readonly type: ProviderType;
  readonly shape: ApiShape;
  readonly pool: OriginPool;
  readonly health: ProviderHealth;
  private readonly basePath: string;
  private readonly staticLines: string;
  private readonly modelMap: Readonly<Record<string, string>>;
  private authCache = { key: '', lines: '' };

  constructor(
    private readonly config: ProviderConfig,
    runtime: Pick<SidecarConfig, 'timeouts' | 'circuitBreaker'>,
    private readonly key: SecretValue | undefined,
  ) {
    this.name = config.name;
    this.type = config.type;
    this.shape = apiShapeOf(config.type);
    const base = new URL(config.baseUrl ?? DEFAULT_BASE_URLS[config.type]!);
    this.basePath = base.pathname.replace(/\/+$/, '');
    this.pool = new OriginPool(base, {
      connectTimeoutMs: runtime.timeouts.connectMs,
      idleTimeoutMs: 30_000,
      maxSockets: 1024,
    });
    this.health = new ProviderHealth(runtime.circuitBreaker.failureThreshold, runtime.circuitBreaker.cooldownMs);
    this.modelMap = config.modelMap ?? {};
    this.staticLines = Object.entries(config.headers ?? {})
      .map(([k, v]) => `${k.toLowerCase()}: ${v}\r\n`)
      .join('');
  }

  /** True when the runtime injects this provider's key (the client's credentials are dropped). */
  get injectsKey(): boolean {
    return this.key !== undefined;
  }

  /** A cdk-agents gateway: requests carry the agent's signed identity instead of a provider key. */
  get signs(): boolean {
    return this.type === 'cdk-agents-gateway';
  }

  /** The signature header lines of one request to a gateway. */
  signatureLines(method: string, path: string, identity: SignedIdentity, body: Buffer | null): string {
    return signatureLines(this.key!.value, method, path, identity, body);
  }

  /** Static and credential header lines for a request; `clientCredentials` is used when we hold no key. */
  headerLines(clientCredentials: string, clientNames: ReadonlySet<string>): string {
    if (this.signs) return `${this.staticLines}accept-encoding: identity\r\n`;
    let lines = this.staticLines + (this.key ? this.authLines(this.key.value) : clientCredentials);
    if (this.shape === 'anthropic' && !clientNames.has('anthropic-version')) lines += `anthropic-version: ${ANTHROPIC_VERSION}\r\n`;
    return `${lines}accept-encoding: identity\r\n`;
  }

  private authLines(key: string): string {
    if (this.authCache.key !== key) {
      const line =
        this.type === 'anthropic' ? `x-api-key: ${key}` : this.type === 'azure-openai' ? `api-key: ${key}` : `authorization: Bearer ${key}`;
      this.authCache = { key, lines: `${line}\r\n` };
    }
    return this.authCache.lines;
  }

  /**
   * Whether this provider may serve requests of the other API shape (translated): it needs a
   * model for them (modelMap or fallbackModel) and its own key (the client's credentials are
   * for the other API). A gateway speaks both shapes natively.
   */
  get servesOtherShape(): boolean {
    return this.key !== undefined && !this.signs && (this.config.fallbackModel !== undefined || Object.keys(this.modelMap).length > 0);
  }

  /** The model it serves a request of the other shape for `model` with, or undefined when none. */
  otherShapeModel(model: string): string | undefined {
    return Object.hasOwn(this.modelMap, model) ? this.modelMap[model] : this.config.fallbackModel;
  }

  /** The model name this provider serves a requested model as. */
  upstreamModel(model: string): string {
    return Object.hasOwn(this.modelMap, model) ? this.modelMap[model] : model;
  }

  /**
   * Maps the path a client called (`/v1/chat/completions?x=1`, relative to the SDK base URL the
   * sidecar stands in for) to this provider's path.
   */
  upstreamPath(incoming: string, model: string | undefined): string {
    const q = incoming.indexOf('?');
    const path = q < 0 ? incoming : incoming.slice(0, q);
    const query = q < 0 ? '' : incoming.slice(q + 1);
    // Anthropic and a gateway take the client's path as it is (a gateway speaks both APIs).
    if (this.shape === 'anthropic' || this.signs) return this.basePath + incoming;
    // OpenAI SDK base URLs end in /v1: the client's /v1 stands for the provider's base path.
    const rest = path.startsWith('/v1/') ? path.slice(3) : path;
    if (this.type !== 'azure-openai') return this.basePath + rest + (query ? `?${query}` : '');
    if (this.config.apiVersion) {
      const deployments = this.config.deployments;
      const deployment = model && deployments && Object.hasOwn(deployments, model) ? deployments[model] : model;
      const prefix = deployment ? `/openai/deployments/${encodeURIComponent(deployment)}` : '/openai';
      const search = new URLSearchParams(query);
      search.set('api-version', this.config.apiVersion);
      return `${this.basePath}${prefix}${rest}?${search.toString()}`;
    }
    return `${this.basePath}/openai/v1${rest}${query ? `?${query}` : ''}`;
  }

  close(): void {
    this.pool.close();
    this.key?.stop();
  }
}
