/**
 * The cloud rule pack: each rule a small check on Terraform attributes, with an id, a level, the
 * reason it exists, the fix, and the Checkov checks it matches (so a Checkov run on dist/tf and
 * this pack agree). A check returns what is wrong with the resource, or undefined.
 */
import { asList, CloudModel, CloudResource, isSet, isTrue, policyStatements, refersTo, type PolicyDocumentStatement } from './cloud-model';

export enum RuleLevel {
  /** Fails synth unless suppressed with a reason. */
  ERROR = 'error',
  /** Reported as a warning annotation. */
  WARNING = 'warning',
}

export interface CloudRule {
  /** 'AGT-AWS-1' ... */
  readonly id: string;
  /** What the rule asks for, in a line. */
  readonly title: string;
  /** Why it matters. */
  readonly explanation: string;
  /** What to change. */
  readonly fix: string;
  readonly level: RuleLevel;
  /** Matching Checkov check ids (none where Checkov has no equivalent). */
  readonly checkov: readonly string[];
  /** Terraform types the rule applies to (data sources as 'data.<type>'). */
  readonly appliesTo: readonly string[];
  readonly check: (resource: CloudResource, model: CloudModel) => string | undefined;
}

const SQS_QUEUE = 'aws_sqs_queue';
const REPLICATION_GROUP = 'aws_elasticache_replication_group';
const SECRET = 'aws_secretsmanager_secret';
const LOG_GROUP = 'aws_cloudwatch_log_group';

export const AWS_RULES: readonly CloudRule[] = [
  {
    id: 'AGT-AWS-1',
    title: 'SQS queues are encrypted at rest',
    explanation: 'Agent jobs carry prompts, user data and tool arguments; an unencrypted queue stores them in the clear.',
    fix: "set kms_master_key_id to the platform's KMS key (or sqs_managed_sse_enabled = true)",
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_27'],
    appliesTo: [SQS_QUEUE],
    check: (queue) =>
      isSet(queue.attributes.kms_master_key_id) || isTrue(queue.attributes.sqs_managed_sse_enabled)
        ? undefined
        : 'neither kms_master_key_id nor sqs_managed_sse_enabled is set',
  },
  {
    id: 'AGT-AWS-2',
    title: 'SQS queues have a dead-letter queue',
    explanation: 'Without one, a message that always fails (a poison job) is retried until it expires, burning LLM spend on every attempt.',
    fix: 'give the queue a redrive_policy { deadLetterTargetArn, maxReceiveCount } pointing at a dead-letter queue',
    level: RuleLevel.ERROR,
    checkov: [],
    appliesTo: [SQS_QUEUE],
    check: (queue, model) => {
      if (deadLetterTarget(queue.attributes.redrive_policy)) return undefined;
      if (model.referencing('aws_sqs_queue_redrive_policy', 'queue_url', queue).length) return undefined;
      if (isDeadLetterQueue(queue, model)) return undefined;
      return 'it has no redrive_policy and no queue uses it as its dead-letter queue';
    },
  },
  {
    id: 'AGT-AWS-3',
    title: 'SQS queues refuse requests without TLS',
    explanation: 'IAM allows SQS calls over plain HTTP unless a queue policy denies them; messages and credentials would cross the network unencrypted.',
    fix: "attach a queue policy (aws_sqs_queue_policy) with a Deny statement for Principal '*', Action 'sqs:*' and Condition Bool aws:SecureTransport = false",
    level: RuleLevel.ERROR,
    checkov: [],
    appliesTo: [SQS_QUEUE],
    check: (queue, model) => {
      const policies = [queue.attributes.policy, ...model.referencing('aws_sqs_queue_policy', 'queue_url', queue).map((p) => p.attributes.policy)];
      const problems: string[] = [];
      for (const policy of policies.filter((p) => p !== undefined)) {
        const statements = policyStatements(policy);
        if (typeof statements === 'string') problems.push(`its policy ${statements}`);
        else if (statements.some(deniesInsecureTransport)) return undefined;
      }
      return problems[0] ?? 'no queue policy denies requests with aws:SecureTransport = false';
    },
  },
  {
    id: 'AGT-AWS-4',
    title: 'ElastiCache is encrypted at rest with a customer-managed KMS key',
    explanation: 'Redis holds budgets, run state, pending approvals and cached LLM answers; snapshots and swap must not be readable from the disk, and a customer-managed key makes every decrypt auditable and revocable.',
    fix: "set at_rest_encryption_enabled = true and kms_key_id to the platform's KMS key",
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_29', 'CKV_AWS_191'],
    appliesTo: [REPLICATION_GROUP],
    check: (group) => {
      if (!isTrue(group.attributes.at_rest_encryption_enabled)) return 'at_rest_encryption_enabled is not true';
      if (!isSet(group.attributes.kms_key_id)) return 'kms_key_id is not set (an AWS-owned key is used)';
      return undefined;
    },
  },
  {
    id: 'AGT-AWS-5',
    title: 'ElastiCache encrypts in transit',
    explanation: 'Without TLS the AUTH token and every budget key cross the VPC in the clear; "preferred" mode still accepts plaintext clients.',
    fix: 'set transit_encryption_enabled = true (and transit_encryption_mode = "required" if you set a mode); clients use rediss://',
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_30'],
    appliesTo: [REPLICATION_GROUP],
    check: (group) => {
      if (!isTrue(group.attributes.transit_encryption_enabled)) return 'transit_encryption_enabled is not true';
      if (group.attributes.transit_encryption_mode === 'preferred') return 'transit_encryption_mode is "preferred", which accepts plaintext connections';
      return undefined;
    },
  },
  {
    id: 'AGT-AWS-6',
    title: 'ElastiCache requires authentication',
    explanation: 'Anything that can reach the port could otherwise read or reset every budget and approve pending tool calls.',
    fix: 'set auth_token (generated into Secrets Manager, as AgentCloud does) or user_group_ids with RBAC users',
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_31'],
    appliesTo: [REPLICATION_GROUP],
    check: (group) => {
      if (!isTrue(group.attributes.transit_encryption_enabled)) return 'transit encryption is off, so AUTH cannot be enforced';
      if (isSet(group.attributes.auth_token) || asList(group.attributes.user_group_ids as string[] | undefined).length) return undefined;
      return 'neither auth_token nor user_group_ids is set';
    },
  },
  {
    id: 'AGT-AWS-7',
    title: 'ElastiCache fails over automatically across zones',
    explanation: 'Budgets fail closed when Redis is down: a single node or zone failure would stop every agent.',
    fix: 'set automatic_failover_enabled = true, multi_az_enabled = true and num_cache_clusters >= 2',
    level: RuleLevel.ERROR,
    checkov: ['CKV2_AWS_50'],
    appliesTo: [REPLICATION_GROUP],
    check: (group) => {
      const a = group.attributes;
      if (!isTrue(a.automatic_failover_enabled)) return 'automatic_failover_enabled is not true';
      if (!isTrue(a.multi_az_enabled)) return 'multi_az_enabled is not true';
      const nodes = typeof a.num_cache_clusters === 'number' ? a.num_cache_clusters : undefined;
      const replicas = typeof a.replicas_per_node_group === 'number' ? a.replicas_per_node_group : undefined;
      if ((nodes !== undefined && nodes < 2) || (nodes === undefined && replicas !== undefined && replicas < 1)) {
        return 'it has a single node, so there is nothing to fail over to';
      }
      return undefined;
    },
  },
  {
    id: 'AGT-AWS-8',
    title: 'ElastiCache keeps automatic snapshots',
    explanation: 'Pending approvals and monthly budgets live in Redis; a snapshot brings them back after a failed upgrade or an operator mistake.',
    fix: 'set snapshot_retention_limit to at least 1 day',
    level: RuleLevel.WARNING,
    checkov: ['CKV_AWS_134'],
    appliesTo: [REPLICATION_GROUP],
    check: (group) => {
      const days = group.attributes.snapshot_retention_limit;
      return typeof days === 'number' && days >= 1 ? undefined : 'snapshot_retention_limit is not set (no snapshots are kept)';
    },
  },
  {
    id: 'AGT-AWS-9',
    title: 'Secrets Manager secrets use a customer-managed KMS key',
    explanation: 'Provider keys and the Redis token are the most valuable secrets of the platform; a customer-managed key lets you audit and revoke every decrypt.',
    fix: "set kms_key_id to the platform's KMS key",
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_149'],
    appliesTo: [SECRET],
    check: (secret) => (isSet(secret.attributes.kms_key_id) ? undefined : 'kms_key_id is not set (the AWS managed key aws/secretsmanager is used)'),
  },
  {
    id: 'AGT-AWS-10',
    title: 'Secrets Manager secrets rotate, or say why not',
    explanation: 'A leaked key stays valid until it is rotated; where no rotation function can exist (keys minted in a provider console), the waiver and its reason belong next to the secret.',
    fix: 'add an aws_secretsmanager_secret_rotation for the secret (ProviderKeyRotation.withLambda), or waive with a reason (ProviderKeyRotation.waived / CloudRules.suppress)',
    level: RuleLevel.ERROR,
    checkov: ['CKV2_AWS_57'],
    appliesTo: [SECRET],
    check: (secret, model) =>
      model.referencing('aws_secretsmanager_secret_rotation', 'secret_id', secret).length ? undefined : 'no aws_secretsmanager_secret_rotation is configured for it',
  },
  {
    id: 'AGT-AWS-11',
    title: 'IAM policies name their actions (no wildcards)',
    explanation: "A wildcard action grants every current and future API of a service (or all of AWS): an agent's credentials should do only what its workload calls.",
    fix: "replace each wildcard (e.g. 'sqs:*') with the actions used (sqs:ReceiveMessage, sqs:DeleteMessage ...), and NotAction in Allow statements with Action",
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_49', 'CKV_AWS_62', 'CKV_AWS_63'],
    appliesTo: ['aws_iam_policy', 'aws_iam_role_policy', 'aws_iam_user_policy', 'aws_iam_group_policy', 'aws_iam_role', 'data.aws_iam_policy_document'],
    check: (resource) => {
      const a = resource.attributes;
      if (resource.type === 'data.aws_iam_policy_document') {
        const statements = (a.statement ?? []) as { effect?: string; actions?: string[]; not_actions?: string[] }[];
        return wildcardProblem(
          statements.map((s) => ({ Effect: s.effect ?? 'Allow', Action: s.actions, NotAction: s.not_actions })),
        );
      }
      const documents =
        resource.type === 'aws_iam_role'
          ? [a.assume_role_policy, ...((a.inline_policy ?? []) as { policy?: string }[]).map((p) => p.policy)]
          : [a.policy];
      for (const document of documents.filter((d) => d !== undefined)) {
        const statements = policyStatements(document);
        if (typeof statements === 'string') return `a policy ${statements}`;
        const problem = wildcardProblem(statements);
        if (problem) return problem;
      }
      return undefined;
    },
  },
  {
    id: 'AGT-AWS-12',
    title: 'Log groups expire their events',
    explanation: 'Logs kept forever cost more every month and keep personal data past any retention policy.',
    fix: 'set retention_in_days (AgentCloud: logRetentionDays, 365 by default)',
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_66'],
    appliesTo: [LOG_GROUP],
    check: (group) => {
      const days = group.attributes.retention_in_days;
      return typeof days === 'number' && days > 0 ? undefined : 'retention_in_days is not set (events never expire)';
    },
  },
  {
    id: 'AGT-AWS-13',
    title: 'Log groups are encrypted with a customer-managed KMS key',
    explanation: 'Engine and slow logs can contain keys and arguments; a customer-managed key controls who can read them.',
    fix: "set kms_key_id to the platform's KMS key (its policy must allow logs.<region>.amazonaws.com)",
    level: RuleLevel.ERROR,
    checkov: ['CKV_AWS_158'],
    appliesTo: [LOG_GROUP],
    check: (group) => (isSet(group.attributes.kms_key_id) ? undefined : 'kms_key_id is not set'),
  },
];

function deadLetterTarget(redrivePolicy: unknown): boolean {
  if (typeof redrivePolicy !== 'string') return false;
  try {
    return isSet((JSON.parse(redrivePolicy) as { deadLetterTargetArn?: unknown }).deadLetterTargetArn);
  } catch {
    // A Terraform expression (jsonencode): trust it names a target rather than fail the build on syntax.
    return redrivePolicy.includes('deadLetterTargetArn');
  }
}

function isDeadLetterQueue(queue: CloudResource, model: CloudModel): boolean {
  const targets = [
    ...model.ofType(SQS_QUEUE).map((q) => q.attributes.redrive_policy),
    ...model.ofType('aws_sqs_queue_redrive_policy').map((p) => p.attributes.redrive_policy),
  ];
  return targets.some((policy) => typeof policy === 'string' && deadLetterTarget(policy) && refersTo(policy, queue));
}

function deniesInsecureTransport(statement: PolicyDocumentStatement): boolean {
  if (statement.Effect !== 'Deny') return false;
  const principal = statement.Principal;
  const everyone = principal === '*' || (typeof principal === 'object' && principal !== null && asList((principal as { AWS?: string | string[] }).AWS).includes('*'));
  const actions = asList(statement.Action);
  const secure = statement.Condition?.Bool?.['aws:SecureTransport'];
  return everyone && (actions.includes('sqs:*') || actions.includes('*')) && (secure === false || secure === 'false');
}

function wildcardProblem(statements: PolicyDocumentStatement[]): string | undefined {
  for (const statement of statements) {
    if ((statement.Effect ?? 'Allow') !== 'Allow') continue;
    if (statement.NotAction !== undefined && asList(statement.NotAction).length) return 'an Allow statement uses NotAction (everything except a list)';
    const wildcards = asList(statement.Action).filter((action) => action.includes('*'));
    if (wildcards.length) return `it allows ${wildcards.map((w) => `'${w}'`).join(', ')}`;
  }
  return undefined;
}
