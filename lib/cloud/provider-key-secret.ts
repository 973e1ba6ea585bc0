/**
 * ProviderKeySecret: the Secrets Manager entry for one LLM provider's API key. Terraform creates
 * the secret (encrypted with the platform key, rotation configured or explicitly waived) but
 * never a version: the key is put in out of band, so it never enters Terraform state or plans.
 */
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretRotation } from '@cdktf/provider-aws/lib/secretsmanager-secret-rotation';
import { Token } from 'cdktf';
import { Construct } from 'constructs';
import type { PlatformNames, ProviderKeyNames } from '../spec/platform';
import type { PlatformKey } from './platform-key';
import { CloudRules } from './rules/cloud-rules';

/** Options for `ProviderKeyRotation.withLambda`. */
export interface LambdaRotationOptions {
  /** ARN of a Secrets Manager rotation function that can mint a new key at the provider (its resource policy must let secretsmanager.amazonaws.com invoke it). */
  readonly functionArn: string;
  /**
   * Days between rotations (1 to 1000).
   * @default 30
   */
  readonly everyDays?: number;
}

/** How provider keys rotate: by a rotation function, or waived with a reason that is kept next to the secret. */
export class ProviderKeyRotation {
  /** Secrets Manager invokes `functionArn` every `everyDays` days. */
  public static withLambda(options: LambdaRotationOptions): ProviderKeyRotation {
    const everyDays = options.everyDays ?? 30;
    if (!options.functionArn || (!Token.isUnresolved(options.functionArn) && !/^arn:aws[\w-]*:lambda:[a-z0-9-]+:\d{12}:function:[\w-]+(:[\w-]+)?$/.test(options.functionArn))) {
      throw new Error(`ProviderKeyRotation.withLambda: 'functionArn' ('${options.functionArn}') must be a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME).`);
    }
    if (!Number.isInteger(everyDays) || everyDays < 1 || everyDays > 1000) {
      throw new Error(`ProviderKeyRotation.withLambda: 'everyDays' (${everyDays}) must be a whole number of days from 1 to 1000.`);
    }
    return new ProviderKeyRotation(options.functionArn, everyDays, undefined);
  }

  /**
   * No automatic rotation, for keys only a person can mint (provider consoles). The reason is
   * recorded as the suppression of rule AGT-AWS-10 on each secret, visible in the Terraform JSON.
   */
  public static waived(reason: string): ProviderKeyRotation {
    if (typeof reason !== 'string' || reason.trim().length < 10) {
      throw new Error(
        "ProviderKeyRotation.waived: give the reason rotation is waived (at least 10 characters), e.g. 'keys are minted in the provider console and rotated by hand every 90 days'.",
      );
    }
    return new ProviderKeyRotation(undefined, undefined, reason.trim());
  }

  private constructor(
    /** The rotation function, for `withLambda`. */
    public readonly functionArn: string | undefined,
    /** Days between rotations, for `withLambda`. */
    public readonly everyDays: number | undefined,
    /** Why there is no rotation, for `waived`. */
    public readonly waiverReason: string | undefined,
  ) {}
}

export interface ProviderKeySecretProps {
  /** The platform's names. */
  readonly names: PlatformNames;
  /** The provider (declared in the spec's `providerKeys`). */
  readonly provider: string;
  /** Encrypts the secret. */
  readonly key: PlatformKey;
  /** Rotation by a function, or a waiver with its reason. */
  readonly rotation: ProviderKeyRotation;
  /**
   * Days a deleted secret can be restored (7 to 30).
   * @default 30
   */
  readonly recoveryWindowDays?: number;
  /**
   * Tags on the secret.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

export class ProviderKeySecret extends Construct {
  /** The secret (the construct's default child). */
  public readonly secret: SecretsmanagerSecret;
  /** The rotation schedule, with `ProviderKeyRotation.withLambda`. */
  public readonly rotation?: SecretsmanagerSecretRotation;
  /** Its name and JSON property, from the spec. */
  public readonly keyNames: ProviderKeyNames;

  constructor(scope: Construct, id: string, props: ProviderKeySecretProps) {
    super(scope, id);
    this.keyNames = props.names.providerKey(props.provider);
    const recoveryWindowDays = props.recoveryWindowDays ?? 30;
    if (!Number.isInteger(recoveryWindowDays) || recoveryWindowDays < 7 || recoveryWindowDays > 30) {
      throw new Error(`ProviderKeySecret '${props.provider}': 'recoveryWindowDays' (${recoveryWindowDays}) must be a whole number of days from 7 to 30.`);
    }
    const declared = props.names.spec.providerKeys.find((k) => k.name === props.provider)!;
    this.secret = new SecretsmanagerSecret(this, 'Resource', {
      name: this.keyNames.secretName,
      description: `${declared.description ?? `API key for ${props.provider}`}. JSON {"${this.keyNames.property}": "..."}, set out of band (never by Terraform).`,
      kmsKeyId: props.key.arn,
      recoveryWindowInDays: recoveryWindowDays,
      tags: props.tags,
    });
    const { rotation } = props;
    if (rotation.functionArn !== undefined) {
      this.rotation = new SecretsmanagerSecretRotation(this, 'Rotation', {
        secretId: this.secret.id,
        rotationLambdaArn: rotation.functionArn,
        rotationRules: { automaticallyAfterDays: rotation.everyDays },
        // The first value is put in by hand after apply; rotating an empty secret would fail.
        rotateImmediately: false,
      });
    } else {
      CloudRules.suppress(this.secret, 'AGT-AWS-10', `Rotation waived: ${rotation.waiverReason}`);
    }
  }
}
