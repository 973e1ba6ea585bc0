/**
 * Turns secret references into Secret keys the pod can mount: a Kubernetes Secret as is, AWS
 * Secrets Manager entries through one ExternalSecret per consumer (so the agent's own secrets
 * and the sidecar's keys never share a Secret).
 */
import { Lazy } from 'cdk8s';
import { Construct } from 'constructs';
import {
  ExternalSecret,
  ExternalSecretSpec,
  ExternalSecretSpecSecretStoreRefKind,
  ExternalSecretSpecTargetCreationPolicy,
} from '../imports/external-secrets.io_externalsecrets';
import { SecretKey, SecretStoreKind, SecretStoreRef } from './secrets';

/** A key of a Kubernetes Secret in the consumer's namespace. */
export interface BoundSecret {
  readonly secretName: string;
  readonly key: string;
}

/** How often External Secrets re-reads AWS: a rotated key reaches the runtime (which re-reads files every minute) within this. */
export const EXTERNAL_SECRET_REFRESH = '1h';

export interface SecretBinderOptions {
  /** Where the ExternalSecret goes, and its construct id. */
  readonly scope: Construct;
  readonly id: string;
  /** The name of the ExternalSecret and of the Secret it writes. */
  readonly secretName: string;
  readonly namespace?: string;
  readonly labels: Record<string, string>;
  readonly store?: SecretStoreRef;
  /** Names the construct in errors: "AgentService 'support-chat'". */
  readonly owner: string;
}

export class SecretBinder {
  private readonly entries = new Map<string, { readonly secretId: string; readonly property?: string }>();
  private resource?: ExternalSecret;

  constructor(private readonly options: SecretBinderOptions) {}

  /** The ExternalSecret, once an AWS Secrets Manager reference was bound. */
  get externalSecret(): ExternalSecret | undefined {
    return this.resource;
  }

  /** The Secret key behind `ref`; `item` names its key in the synced Secret, `prop` the prop in errors. */
  bind(ref: SecretKey, item: string, prop: string): BoundSecret {
    if (ref.secretName !== undefined) return { secretName: ref.secretName, key: ref.key! };
    const { owner, store } = this.options;
    if (!store) {
      throw new Error(
        `${owner}: '${prop}' comes from AWS Secrets Manager (${ref.awsSecretId}): set 'secretStore' ` +
          `(e.g. SecretStoreRef.clusterSecretStore('aws-secrets-manager')) so its ExternalSecret can read it.`,
      );
    }
    const existing = this.entries.get(item);
    if (existing && (existing.secretId !== ref.awsSecretId || existing.property !== ref.awsProperty)) {
      throw new Error(`${owner}: '${prop}' and an earlier secret both map to '${item}' in ${this.options.secretName}; give them distinct names.`);
    }
    this.entries.set(item, { secretId: ref.awsSecretId!, property: ref.awsProperty });
    this.resource ??= externalSecret(this.options.scope, this.options.id, {
      name: this.options.secretName,
      namespace: this.options.namespace,
      labels: this.options.labels,
      store,
      spec: () => ({
        data: [...this.entries].map(([secretKey, e]) => ({ secretKey, remoteRef: { key: e.secretId, property: e.property } })),
      }),
    });
    return { secretName: this.options.secretName, key: item };
  }
}

export interface ExternalSecretOptions {
  readonly name: string;
  readonly namespace?: string;
  readonly labels: Record<string, string>;
  readonly store: SecretStoreRef;
  /** What to sync (data or dataFrom), rendered at synth. */
  readonly spec: () => Pick<ExternalSecretSpec, 'data' | 'dataFrom'>;
}

/** An ExternalSecret writing a Secret of the same name, owned by it (deleted with it). */
export function externalSecret(scope: Construct, id: string, options: ExternalSecretOptions): ExternalSecret {
  return new ExternalSecret(scope, id, {
    metadata: { name: options.name, namespace: options.namespace, labels: options.labels },
    spec: Lazy.any({
      produce: (): ExternalSecretSpec => ({
        refreshInterval: EXTERNAL_SECRET_REFRESH,
        secretStoreRef: {
          name: options.store.name,
          kind:
            options.store.kind === SecretStoreKind.CLUSTER_SECRET_STORE
              ? ExternalSecretSpecSecretStoreRefKind.CLUSTER_SECRET_STORE
              : ExternalSecretSpecSecretStoreRefKind.SECRET_STORE,
        },
        target: { name: options.name, creationPolicy: ExternalSecretSpecTargetCreationPolicy.OWNER },
        ...options.spec(),
      }),
    }),
  });
}
