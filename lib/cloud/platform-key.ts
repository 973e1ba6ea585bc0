/**
 * PlatformKey: the customer-managed KMS key every encrypted resource of the platform uses
 * (queues, Redis, secrets, log groups, the alarm topic), with a key policy that lets the AWS
 * services writing logs and alarms use it and leaves everything else to IAM.
 */
import { KmsAlias } from '@cdktf/provider-aws/lib/kms-alias';
import { KmsKey } from '@cdktf/provider-aws/lib/kms-key';
import { Construct } from 'constructs';
import type { PlatformNames } from '../spec/platform';

export interface PlatformKeyProps {
  /** The platform's names (alias, account, region, log group prefix). */
  readonly names: PlatformNames;
  /**
   * Days a deleted key waits before it is destroyed (7 to 30): the window to undo a deletion.
   * @default 30
   */
  readonly deletionWindowDays?: number;
  /**
   * Tags on the key.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

export class PlatformKey extends Construct {
  /** The key (the construct's default child). */
  public readonly key: KmsKey;
  public readonly alias: KmsAlias;

  constructor(scope: Construct, id: string, props: PlatformKeyProps) {
    super(scope, id);
    const deletionWindowDays = props.deletionWindowDays ?? 30;
    if (!Number.isInteger(deletionWindowDays) || deletionWindowDays < 7 || deletionWindowDays > 30) {
      throw new Error(`PlatformKey: 'deletionWindowDays' (${deletionWindowDays}) must be a whole number of days from 7 to 30 (KMS limits).`);
    }
    const { names } = props;
    const arn = (service: string, resource: string) => `arn:${names.partition}:${service}:${names.region}:${names.accountId}:${resource}`;
    this.key = new KmsKey(this, 'Resource', {
      description: `cdk-agents platform ${names.prefix}: queues, Redis, secrets, logs and alarms`,
      enableKeyRotation: true,
      deletionWindowInDays: deletionWindowDays,
      policy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            // The account's IAM policies decide who uses the key (the default key policy); without it the key is unmanageable.
            Sid: 'EnableIamPolicies',
            Effect: 'Allow',
            Principal: { AWS: `arn:${names.partition}:iam::${names.accountId}:root` },
            Action: 'kms:*',
            Resource: '*',
          },
          {
            // CloudWatch Logs encrypts the platform's log groups itself, and only those.
            Sid: 'CloudWatchLogsOfThePlatform',
            Effect: 'Allow',
            Principal: { Service: `logs.${names.region}.amazonaws.com` },
            Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:DescribeKey'],
            Resource: '*',
            Condition: { ArnLike: { 'kms:EncryptionContext:aws:logs:arn': arn('logs', `log-group:${names.logGroupPrefix}*`) } },
          },
          {
            // CloudWatch alarms publish to the encrypted alarm topic.
            Sid: 'CloudWatchAlarmsToTheTopic',
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: '*',
            Condition: { StringEquals: { 'aws:SourceAccount': names.accountId } },
          },
        ],
      }),
      tags: props.tags,
    });
    this.alias = new KmsAlias(this, 'Alias', { name: names.kmsKeyAlias, targetKeyId: this.key.keyId });
  }

  /** The key's ARN (resolves at apply). */
  public get arn(): string {
    return this.key.arn;
  }
}
