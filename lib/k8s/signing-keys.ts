/**
 * The keys sidecars sign their identity with toward an LlmGateway: one Secret with one key per
 * agent, named by the agent. The gateway mounts every connected agent's key; each sidecar only
 * its own, and the agent container none.
 */
import { checkSecretName } from './names';

export class GatewaySigningKeys {
  /**
   * An existing Secret (created out of band, never in git), one key per agent named by the agent:
   * `kubectl create secret generic NAME --from-literal=support-chat=$(openssl rand -base64 32)`.
   * An agent in another namespace needs a Secret of the same name there holding its key.
   */
  public static fromSecret(secretName: string): GatewaySigningKeys {
    checkSecretName('GatewaySigningKeys.fromSecret', secretName);
    return new GatewaySigningKeys(secretName, undefined);
  }

  /**
   * An AWS Secrets Manager secret holding a JSON object, one property per agent, synced by an
   * ExternalSecret named like the Secret (`<gateway>-signing-keys`).
   */
  public static fromAwsSecretsManager(secretId: string): GatewaySigningKeys {
    if (!secretId) throw new Error('GatewaySigningKeys.fromAwsSecretsManager: the secret id is empty.');
    return new GatewaySigningKeys(undefined, secretId);
  }

  private constructor(
    /** The Secret, for `fromSecret`. */
    public readonly secretName: string | undefined,
    /** The AWS secret, for `fromAwsSecretsManager`. */
    public readonly awsSecretId: string | undefined,
  ) {}
}
