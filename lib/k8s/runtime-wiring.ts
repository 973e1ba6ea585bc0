/**
 * What a provider or a Redis store needs around the runtime container, the same for a sidecar
 * and for the gateway: its secrets mounted as files, its config entry, and its egress.
 */
import type { SidecarConfigInput } from '../spec';
import type { BudgetStore } from './budget-store';
import type { SecretBinder } from './external-secrets';
import type { PolicyRules } from './network';
import type { LlmProvider } from './provider';
import { RUNTIME_SECRETS_DIR, type SecretMounts } from './runtime-container';

export interface RuntimeWiring {
  /** "AgentService 'support-chat'", for errors. */
  readonly owner: string;
  readonly secrets: SecretBinder;
  readonly mounts: SecretMounts;
  readonly rules: PolicyRules;
}

/** Mounts the provider's key (if any) and opens egress to it; returns the key file. */
export function wireProvider(w: RuntimeWiring, provider: LlmProvider): string | undefined {
  let keyFile: string | undefined;
  if (provider.apiKey) {
    const key = w.secrets.bind(provider.apiKey, `${provider.name}-api-key`, `providers (${provider.name}).apiKey`);
    keyFile = w.mounts.add(`provider-${provider.name}`, `${RUNTIME_SECRETS_DIR}/providers/${provider.name}`, 'api-key', key);
  }
  w.rules.allowEndpoint(`${w.owner}: provider '${provider.name}'`, provider.baseUrl, provider.peer, provider.targetPort);
  return keyFile;
}

/** The store's config entry, with its password and CA mounted and egress to Redis open. */
export function wireStore(w: RuntimeWiring, store: BudgetStore): NonNullable<SidecarConfigInput['store']> {
  const redis = store.redis;
  if (!redis) return { type: 'memory' };
  const config: Record<string, unknown> = {
    type: 'redis',
    url: redis.urlSecret
      ? { file: w.mounts.add('redis-url', `${RUNTIME_SECRETS_DIR}/redis-url`, 'url', w.secrets.bind(redis.urlSecret, 'redis-url', 'store.urlSecret')) }
      : redis.url,
    username: redis.username,
    keyPrefix: redis.keyPrefix,
    commandTimeoutMs: redis.commandTimeout?.toMilliseconds(),
    onUnavailable: redis.onUnavailable,
  };
  if (redis.passwordSecret) {
    const secret = w.secrets.bind(redis.passwordSecret, 'redis-password', 'store.passwordSecret');
    config.password = { file: w.mounts.add('redis-password', `${RUNTIME_SECRETS_DIR}/redis`, 'password', secret) };
  }
  if (redis.tlsCaSecret) {
    const secret = w.secrets.bind(redis.tlsCaSecret, 'redis-ca', 'store.tlsCaSecret');
    config.tls = { caFile: w.mounts.add('redis-ca', `${RUNTIME_SECRETS_DIR}/redis-ca`, 'ca.pem', secret) };
  }
  if (redis.peer) {
    w.rules.allowEgress(redis.peer, store.port!, 'the Redis store of the sidecar (budgets, rate limits, approvals)');
  } else {
    // In-cluster Redis or a managed one at a private address: its port, to pods and to addresses.
    w.rules.allowAnyPod(store.port!);
    w.rules.allowAnyAddress(store.port!);
  }
  return config as NonNullable<SidecarConfigInput['store']>;
}
