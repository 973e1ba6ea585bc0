/**
 * SqsWorkerQueue: the SQS queue a queue-driven worker consumes, with its dead-letter queue, both
 * encrypted with the platform key and refusing requests without TLS. Names and limits come from
 * the platform spec, so the worker on the Kubernetes side points at the same URL.
 */
import { SqsQueue } from '@cdktf/provider-aws/lib/sqs-queue';
import { SqsQueuePolicy } from '@cdktf/provider-aws/lib/sqs-queue-policy';
import { SqsQueueRedriveAllowPolicy } from '@cdktf/provider-aws/lib/sqs-queue-redrive-allow-policy';
import { Construct } from 'constructs';
import type { PlatformNames, WorkerQueueNames } from '../spec/platform';
import type { PlatformKey } from './platform-key';

export interface SqsWorkerQueueProps {
  /** The platform's names. */
  readonly names: PlatformNames;
  /** The worker (an agent with an entry in the spec's `workerQueues`). */
  readonly worker: string;
  /** Encrypts both queues. */
  readonly key: PlatformKey;
  /**
   * Tags on both queues.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

/** The longest SQS keeps a message: dead letters wait this long for someone to look. */
const DEAD_LETTER_RETENTION_SECONDS = 1_209_600;

export class SqsWorkerQueue extends Construct {
  /** The queue the worker consumes (the construct's default child). */
  public readonly queue: SqsQueue;
  /** Where messages go after `maxReceiveCount` failed receives. */
  public readonly deadLetterQueue: SqsQueue;
  public readonly queuePolicy: SqsQueuePolicy;
  public readonly deadLetterQueuePolicy: SqsQueuePolicy;
  /** Only this queue may move messages into the dead-letter queue. */
  public readonly redriveAllowPolicy: SqsQueueRedriveAllowPolicy;
  /** The names from the spec (queue URL and ARN known before apply). */
  public readonly queueNames: WorkerQueueNames;

  constructor(scope: Construct, id: string, props: SqsWorkerQueueProps) {
    super(scope, id);
    const queueNames = props.names.workerQueue(props.worker);
    this.queueNames = queueNames;
    const declared = props.names.spec.workerQueues.find((q) => q.worker === props.worker)!;
    const encryption = { kmsMasterKeyId: props.key.arn, kmsDataKeyReusePeriodSeconds: 300 };

    this.deadLetterQueue = new SqsQueue(this, 'DeadLetterQueue', {
      name: queueNames.deadLetterQueueName,
      messageRetentionSeconds: DEAD_LETTER_RETENTION_SECONDS,
      ...encryption,
      tags: props.tags,
    });
    this.queue = new SqsQueue(this, 'Resource', {
      name: queueNames.queueName,
      visibilityTimeoutSeconds: declared.visibilityTimeoutSeconds,
      messageRetentionSeconds: declared.messageRetentionSeconds,
      // Long polling: a waiting worker costs one request per 20 s instead of a busy loop.
      receiveWaitTimeSeconds: 20,
      redrivePolicy: JSON.stringify({ deadLetterTargetArn: this.deadLetterQueue.arn, maxReceiveCount: declared.maxReceiveCount }),
      ...encryption,
      tags: props.tags,
    });
    // A separate resource: on the dead-letter queue itself it would make the two queues refer to each other.
    this.redriveAllowPolicy = new SqsQueueRedriveAllowPolicy(this, 'RedriveAllowPolicy', {
      queueUrl: this.deadLetterQueue.url,
      redriveAllowPolicy: JSON.stringify({ redrivePermission: 'byQueue', sourceQueueArns: [this.queue.arn] }),
    });
    this.queuePolicy = new SqsQueuePolicy(this, 'Policy', { queueUrl: this.queue.url, policy: denyInsecureTransport(this.queue.arn) });
    this.deadLetterQueuePolicy = new SqsQueuePolicy(this, 'DeadLetterQueuePolicy', {
      queueUrl: this.deadLetterQueue.url,
      policy: denyInsecureTransport(this.deadLetterQueue.arn),
    });
  }
}

/** Access is granted by IAM; the queue policy only refuses plain HTTP, for everyone. */
function denyInsecureTransport(queueArn: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'DenyInsecureTransport',
        Effect: 'Deny',
        Principal: '*',
        Action: 'sqs:*',
        Resource: queueArn,
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ],
  });
}
