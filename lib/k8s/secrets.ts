/**
 * References to secret values: a key of a Kubernetes Secret, or an entry of AWS Secrets Manager
 * synced into one by External Secrets. Never a literal: a secret in the synthesized YAML would
 * end up in git.
 */
import { checkSecretKey, checkSecretName } from './names';

/** A secret value: a key of a Kubernetes Secret, or an AWS Secrets Manager entry. */
export class SecretKey {
  /** The key `key` of the Kubernetes Secret `secretName` (created out of band, never in git). */
  public static fromSecret(secretName: string, key: string): SecretKey {
    checkSecretName('SecretKey.fromSecret', secretName);
    checkSecretKey('SecretKey.fromSecret', key);
    return new SecretKey(secretName, key, undefined, undefined);
  }

  /**
   * An AWS Secrets Manager secret, whole or one `property` of a JSON secret. The construct using
   * it emits an ExternalSecret (external-secrets.io/v1) through its `secretStore` prop.
   */
  public static fromAwsSecretsManager(secretId: string, property?: string): SecretKey {
    if (!secretId) throw new Error('SecretKey.fromAwsSecretsManager: the secret id is empty.');
    return new SecretKey(undefined, undefined, secretId, property);
  }

  private constructor(
    /** The Kubernetes Secret, for `fromSecret`. */
    public readonly secretName: string | undefined,
    /** The key in it, for `fromSecret`. */
    public readonly key: string | undefined,
    /** The AWS Secrets Manager secret id or ARN, for `fromAwsSecretsManager`. */
    public readonly awsSecretId: string | undefined,
    /** The JSON property of the AWS secret, if any. */
    public readonly awsProperty: string | undefined,
  ) {}
}

/** The bearer token approvers present to the sidecar's approvals API. */
export class ApproverToken {
  /** The key `key` of the Kubernetes Secret `secretName`. */
  public static fromSecret(secretName: string, key: string): ApproverToken {
    return new ApproverToken(SecretKey.fromSecret(secretName, key));
  }

  /** Any secret reference, e.g. `SecretKey.fromAwsSecretsManager(...)`. */
  public static fromSecretKey(secretKey: SecretKey): ApproverToken {
    return new ApproverToken(secretKey);
  }

  private constructor(
    /** Where the token is. */
    public readonly secretKey: SecretKey,
  ) {}
}

/** The kind of External Secrets store an ExternalSecret reads through. */
export enum SecretStoreKind {
  /** A namespaced SecretStore: only ExternalSecrets of its namespace can use it. */
  SECRET_STORE = 'SecretStore',
  /** A ClusterSecretStore, usable from every namespace. */
  CLUSTER_SECRET_STORE = 'ClusterSecretStore',
}

/** An existing External Secrets store (with its AWS credentials), referenced by name. */
export class SecretStoreRef {
  /** A ClusterSecretStore. */
  public static clusterSecretStore(name: string): SecretStoreRef {
    return new SecretStoreRef(name, SecretStoreKind.CLUSTER_SECRET_STORE);
  }

  /** A SecretStore in the construct's namespace. */
  public static secretStore(name: string): SecretStoreRef {
    return new SecretStoreRef(name, SecretStoreKind.SECRET_STORE);
  }

  private constructor(
    /** The store's name. */
    public readonly name: string,
    /** Its kind. */
    public readonly kind: SecretStoreKind,
  ) {
    checkSecretName('SecretStoreRef', name);
  }
}
