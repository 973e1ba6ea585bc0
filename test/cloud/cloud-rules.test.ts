/**
 * The cloud rule pack: every rule catches a resource that breaks it (and only that rule fires on a
 * resource compliant but for that one thing), errors fail synth with the resource and the fix,
 * warnings are annotations, and suppressions need a reason and are written next to the resource.
 */
import { CloudwatchLogGroup } from '@cdktf/provider-aws/lib/cloudwatch-log-group';
import { DataAwsIamPolicyDocument } from '@cdktf/provider-aws/lib/data-aws-iam-policy-document';
import { ElasticacheReplicationGroup, type ElasticacheReplicationGroupConfig } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { IamPolicy } from '@cdktf/provider-aws/lib/iam-policy';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretRotation } from '@cdktf/provider-aws/lib/secretsmanager-secret-rotation';
import { SqsQueue } from '@cdktf/provider-aws/lib/sqs-queue';
import { SqsQueuePolicy } from '@cdktf/provider-aws/lib/sqs-queue-policy';
import { Fn, TerraformStack, Testing } from 'cdktf';
import { Construct } from 'constructs';
import { CloudRules, RuleLevel, type CloudFinding } from '../../lib/cloud';
import { agentCloud, awsStack, exampleStack } from './helpers';

const KEY = 'arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

/** A stack with the rule pack applied. */
function checkedStack(): TerraformStack {
  const stack = awsStack();
  CloudRules.applyTo(stack);
  return stack;
}

/** Findings as 'RULE construct-path', the shape the assertions read best in. */
function findings(stack: TerraformStack): string[] {
  return CloudRules.check(stack).map((f) => `${f.ruleId} ${f.path}`);
}

/** A queue with a dead-letter queue and TLS-only policies, compliant unless told otherwise. */
function queue(stack: Construct, options: { encrypted?: boolean; deadLetter?: boolean; tlsOnly?: boolean; policy?: string } = {}): SqsQueue {
  const encryption = options.encrypted === false ? {} : { kmsMasterKeyId: KEY };
  const dlq = new SqsQueue(stack, 'Dlq', { name: 'jobs-dlq', ...encryption });
  const main = new SqsQueue(stack, 'Queue', {
    name: 'jobs',
    ...encryption,
    ...(options.deadLetter === false ? {} : { redrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 5 }) }),
  });
  for (const [id, q] of [['QueuePolicy', main], ['DlqPolicy', dlq]] as const) {
    const statement = options.tlsOnly === false
      ? { Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::111122223333:root' }, Action: 'sqs:SendMessage', Resource: q.arn }
      : { Effect: 'Deny', Principal: '*', Action: 'sqs:*', Resource: q.arn, Condition: { Bool: { 'aws:SecureTransport': 'false' } } };
    new SqsQueuePolicy(stack, id, { queueUrl: q.url, policy: q === main && options.policy ? options.policy : JSON.stringify({ Version: '2012-10-17', Statement: [statement] }) });
  }
  return main;
}

function replicationGroup(stack: Construct, overrides: Partial<ElasticacheReplicationGroupConfig> = {}): ElasticacheReplicationGroup {
  return new ElasticacheReplicationGroup(stack, 'Redis', {
    replicationGroupId: 'budgets',
    description: 'budgets',
    nodeType: 'cache.t4g.small',
    numCacheClusters: 2,
    automaticFailoverEnabled: true,
    multiAzEnabled: true,
    atRestEncryptionEnabled: 'true',
    kmsKeyId: KEY,
    transitEncryptionEnabled: true,
    authToken: 'a-token-from-somewhere-0123456789',
    snapshotRetentionLimit: 7,
    ...overrides,
  });
}

function secret(stack: Construct, options: { kms?: boolean; rotation?: boolean } = {}): SecretsmanagerSecret {
  const s = new SecretsmanagerSecret(stack, 'Secret', { name: 'llm/key', ...(options.kms === false ? {} : { kmsKeyId: KEY }) });
  if (options.rotation !== false) {
    new SecretsmanagerSecretRotation(stack, 'Rotation', {
      secretId: s.id,
      rotationLambdaArn: 'arn:aws:lambda:eu-central-1:111122223333:function:rotate',
      rotationRules: { automaticallyAfterDays: 30 },
    });
  }
  return s;
}

const rolePolicy = (actions: string[], extra: object = {}) =>
  JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: actions, Resource: 'arn:aws:sqs:eu-central-1:111122223333:jobs', ...extra }] });

function role(stack: Construct): IamRole {
  return new IamRole(stack, 'Role', {
    name: 'worker',
    assumeRolePolicy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] }),
  });
}

describe('each rule catches a resource that breaks it, and only that rule fires', () => {
  test.each<[string, (stack: TerraformStack) => void, string[]]>([
    ['AGT-AWS-1: an unencrypted queue', (s) => queue(s, { encrypted: false }), ['AGT-AWS-1 stack/Dlq', 'AGT-AWS-1 stack/Queue']],
    ['AGT-AWS-1: SSE-SQS (SQS-managed keys) passes', (s) => new SqsQueue(s, 'Managed', { sqsManagedSseEnabled: true, redrivePolicy: '{"deadLetterTargetArn":"arn:aws:sqs:eu-central-1:111122223333:x"}', policy: rolePolicy([], { Effect: 'Deny', Principal: '*', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': false } } }) }), []],
    ['AGT-AWS-2: a queue without a dead-letter queue', (s) => queue(s, { deadLetter: false }), ['AGT-AWS-2 stack/Dlq', 'AGT-AWS-2 stack/Queue']],
    ['AGT-AWS-3: a queue whose policy does not deny plain HTTP', (s) => queue(s, { tlsOnly: false }), ['AGT-AWS-3 stack/Dlq', 'AGT-AWS-3 stack/Queue']],
    ['AGT-AWS-3: a queue policy that is an expression', (s) => queue(s, { policy: Fn.jsonencode({ Statement: [] }) }), ['AGT-AWS-3 stack/Queue']],
    ['AGT-AWS-4: Redis unencrypted at rest', (s) => replicationGroup(s, { atRestEncryptionEnabled: 'false' }), ['AGT-AWS-4 stack/Redis']],
    ['AGT-AWS-4: Redis encrypted with an AWS-owned key', (s) => replicationGroup(s, { kmsKeyId: undefined }), ['AGT-AWS-4 stack/Redis']],
    ['AGT-AWS-5/6: Redis without TLS (so no AUTH either)', (s) => replicationGroup(s, { transitEncryptionEnabled: false }), ['AGT-AWS-5 stack/Redis', 'AGT-AWS-6 stack/Redis']],
    ['AGT-AWS-5: Redis TLS in "preferred" mode', (s) => replicationGroup(s, { transitEncryptionMode: 'preferred' }), ['AGT-AWS-5 stack/Redis']],
    ['AGT-AWS-6: Redis without AUTH', (s) => replicationGroup(s, { authToken: undefined }), ['AGT-AWS-6 stack/Redis']],
    ['AGT-AWS-6: RBAC user groups pass', (s) => replicationGroup(s, { authToken: undefined, userGroupIds: ['agents'] }), []],
    ['AGT-AWS-7: Redis without automatic failover', (s) => replicationGroup(s, { automaticFailoverEnabled: false }), ['AGT-AWS-7 stack/Redis']],
    ['AGT-AWS-7: Redis in one zone', (s) => replicationGroup(s, { multiAzEnabled: false }), ['AGT-AWS-7 stack/Redis']],
    ['AGT-AWS-7: a single Redis node', (s) => replicationGroup(s, { numCacheClusters: 1 }), ['AGT-AWS-7 stack/Redis']],
    ['AGT-AWS-8: Redis without snapshots', (s) => replicationGroup(s, { snapshotRetentionLimit: 0 }), ['AGT-AWS-8 stack/Redis']],
    ['AGT-AWS-9: a secret with the AWS managed key', (s) => secret(s, { kms: false }), ['AGT-AWS-9 stack/Secret']],
    ['AGT-AWS-10: a secret that never rotates', (s) => secret(s, { rotation: false }), ['AGT-AWS-10 stack/Secret']],
    ['AGT-AWS-11: a role policy with a service wildcard', (s) => new IamRolePolicy(s, 'Policy', { role: role(s).name, policy: rolePolicy(['sqs:*']) }), ['AGT-AWS-11 stack/Policy']],
    ['AGT-AWS-11: a managed policy allowing "*" (CKV_AWS_62/63)', (s) => new IamPolicy(s, 'Admin', { policy: rolePolicy(['*']) }), ['AGT-AWS-11 stack/Admin']],
    ['AGT-AWS-11: a prefix wildcard', (s) => new IamPolicy(s, 'Reader', { policy: rolePolicy(['sqs:Get*']) }), ['AGT-AWS-11 stack/Reader']],
    ['AGT-AWS-11: NotAction in an Allow statement', (s) => new IamPolicy(s, 'AllBut', { policy: JSON.stringify({ Statement: [{ Effect: 'Allow', NotAction: 'iam:*', Resource: '*' }] }) }), ['AGT-AWS-11 stack/AllBut']],
    ['AGT-AWS-11: an inline role policy with a wildcard', (s) => new IamRole(s, 'Inline', { assumeRolePolicy: '{"Statement":[]}', inlinePolicy: [{ name: 'p', policy: rolePolicy(['s3:*']) }] }), ['AGT-AWS-11 stack/Inline']],
    ['AGT-AWS-11: an aws_iam_policy_document allowing "*" (CKV_AWS_49)', (s) => new DataAwsIamPolicyDocument(s, 'Doc', { statement: [{ actions: ['*'], resources: ['*'] }] }), ['AGT-AWS-11 stack/Doc']],
    ['AGT-AWS-11: a policy built with jsonencode cannot be checked', (s) => new IamPolicy(s, 'Expr', { policy: Fn.jsonencode({ Statement: [] }) }), ['AGT-AWS-11 stack/Expr']],
    ['AGT-AWS-11: a Deny with a wildcard is fine', (s) => new IamPolicy(s, 'Deny', { policy: JSON.stringify({ Statement: [{ Effect: 'Deny', Action: '*', Resource: '*' }] }) }), []],
    ['AGT-AWS-11: a policy taken from an aws_iam_policy_document is checked there', (s) => {
      const doc = new DataAwsIamPolicyDocument(s, 'Doc', { statement: [{ actions: ['sqs:SendMessage'], resources: ['*'] }] });
      new IamPolicy(s, 'FromDoc', { policy: doc.json });
    }, []],
    ['AGT-AWS-12: a log group kept forever', (s) => new CloudwatchLogGroup(s, 'Logs', { name: 'agents', kmsKeyId: KEY }), ['AGT-AWS-12 stack/Logs']],
    ['AGT-AWS-13: a log group without a customer-managed key', (s) => new CloudwatchLogGroup(s, 'Logs', { name: 'agents', retentionInDays: 30 }), ['AGT-AWS-13 stack/Logs']],
  ])('%s', (_, build, expected) => {
    const stack = checkedStack();
    build(stack);
    expect(findings(stack)).toEqual(expected);
  });

  test('the compliant builders pass every rule (the cases above differ from them in one thing)', () => {
    const stack = checkedStack();
    queue(stack);
    replicationGroup(stack);
    secret(stack);
    new IamRolePolicy(stack, 'Policy', { role: role(stack).name, policy: rolePolicy(['sqs:SendMessage']) });
    new CloudwatchLogGroup(stack, 'Logs', { name: 'agents', retentionInDays: 30, kmsKeyId: KEY });
    expect(findings(stack)).toEqual([]);
  });

  test('the example platform passes with zero findings', () => {
    expect(CloudRules.check(exampleStack())).toEqual([]);
  });
});

describe('findings at synth', () => {
  test('an error fails synth naming the rule, the resource, the fix and the Checkov ids', () => {
    const stack = checkedStack();
    new CloudwatchLogGroup(stack, 'Logs', { name: 'agents', kmsKeyId: KEY });
    expect(() => Testing.synth(stack, true)).toThrow(
      /\[stack\] \[AGT-AWS-12\] aws_cloudwatch_log_group\.Logs: Log groups expire their events: retention_in_days is not set \(events never expire\)\. .* Fix: set retention_in_days .* \(Checkov CKV_AWS_66\)\. Or CloudRules\.suppress\(resource, 'AGT-AWS-12', 'reason'\)\./,
    );
  });

  test('a warning does not fail synth; it is an annotation on the resource', () => {
    const stack = checkedStack();
    const group = replicationGroup(stack, { snapshotRetentionLimit: 0 });
    expect(() => Testing.synth(stack, true)).not.toThrow();
    const warnings = group.node.metadata.filter((m) => m.type === '@cdktf/warn').map((m) => m.data as string);
    expect(warnings).toEqual([expect.stringMatching(/^\[AGT-AWS-8\] aws_elasticache_replication_group\.Redis: ElastiCache keeps automatic snapshots/)]);
  });

  test('AgentCloud applies the pack to itself: a resource added under it is checked at synth', () => {
    const stack = awsStack();
    const cloud = agentCloud(stack);
    new CloudwatchLogGroup(cloud, 'ExtraLogs', { name: '/cdk-agents/acme-agents/extra', kmsKeyId: KEY });
    expect(() => Testing.synth(stack, true)).toThrow(/\[AGT-AWS-12\] aws_cloudwatch_log_group\.AgentCloud_ExtraLogs_[0-9A-F]+/);
  });

  test("resources outside AgentCloud are not its business (apply the pack to the stack to check them)", () => {
    const stack = awsStack();
    agentCloud(stack);
    new CloudwatchLogGroup(stack, 'Mine', { name: 'mine' });
    expect(() => Testing.synth(stack, true)).not.toThrow();
    CloudRules.applyTo(stack);
    expect(() => Testing.synth(stack, true)).toThrow(/AGT-AWS-12\] aws_cloudwatch_log_group\.Mine/);
  });

  test('applied twice (stack and AgentCloud), a finding is reported once', () => {
    const stack = checkedStack();
    const cloud = agentCloud(stack);
    new CloudwatchLogGroup(cloud, 'ExtraLogs', { name: '/cdk-agents/acme-agents/extra', kmsKeyId: KEY });
    let message = '';
    try {
      Testing.synth(stack, true);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message.match(/AGT-AWS-12\]/g)).toHaveLength(1);
  });
});

describe('suppressions', () => {
  test('a suppression with a reason silences the rule on the resource and is written next to it', () => {
    const stack = checkedStack();
    const s = secret(stack, { rotation: false });
    CloudRules.suppress(s, 'AGT-AWS-10', 'Rotated by the provider itself every 30 days.');
    expect(findings(stack)).toEqual([]);
    const tf = stack.toTerraform() as any;
    expect(tf.resource.aws_secretsmanager_secret.Secret['//'].cdk_agents_suppressions).toEqual({ 'AGT-AWS-10': 'Rotated by the provider itself every 30 days.' });
  });

  test('a suppression on a scope covers the resources under it, and only the named rule', () => {
    const stack = checkedStack();
    const scope = new Construct(stack, 'Legacy');
    new CloudwatchLogGroup(scope, 'Logs', { name: 'legacy' });
    CloudRules.suppress(scope, 'AGT-AWS-12', 'Legacy logs expire through an account-wide policy.');
    expect(findings(stack)).toEqual(['AGT-AWS-13 stack/Legacy/Logs']);
  });

  test('a suppression needs a reason', () => {
    const s = secret(checkedStack(), { rotation: false });
    expect(() => CloudRules.suppress(s, 'AGT-AWS-10', '')).toThrow(
      'CloudRules.suppress: suppressing AGT-AWS-10 on stack/Secret needs a reason (at least 10 characters) saying why the rule does not apply here.',
    );
    expect(() => CloudRules.suppress(s, 'AGT-AWS-10', '   ok   ')).toThrow('needs a reason');
  });

  test('an unknown rule id is an error', () => {
    const s = secret(checkedStack());
    expect(() => CloudRules.suppress(s, 'AGT-AWS-99', 'A reason long enough.')).toThrow("CloudRules.suppress: unknown rule 'AGT-AWS-99' on stack/Secret; the rules are AGT-AWS-1, AGT-AWS-2");
  });
});

describe('the pack', () => {
  test('rules have unique ids in order, a level, an explanation, a fix, and cite the Checkov checks of the issue', () => {
    const ids = CloudRules.RULES.map((r) => r.id);
    expect(ids).toEqual(CloudRules.RULES.map((_, i) => `AGT-AWS-${i + 1}`));
    for (const rule of CloudRules.RULES) {
      expect(Object.values(RuleLevel)).toContain(rule.level);
      expect(rule.explanation.length).toBeGreaterThan(30);
      expect(rule.fix.length).toBeGreaterThan(10);
    }
    const cited = CloudRules.RULES.flatMap((r) => r.checkov);
    for (const id of ['CKV_AWS_27', 'CKV_AWS_29', 'CKV_AWS_30', 'CKV_AWS_31', 'CKV2_AWS_50', 'CKV_AWS_149', 'CKV2_AWS_57', 'CKV_AWS_49', 'CKV_AWS_62', 'CKV_AWS_63', 'CKV_AWS_66', 'CKV_AWS_158']) {
      expect(cited).toContain(id);
    }
  });

  test('a finding carries its level, address and construct', () => {
    const stack = checkedStack();
    const group = new CloudwatchLogGroup(stack, 'Logs', { name: 'agents', kmsKeyId: KEY });
    const [finding]: CloudFinding[] = CloudRules.check(stack);
    expect(finding).toMatchObject({ ruleId: 'AGT-AWS-12', level: RuleLevel.ERROR, address: 'aws_cloudwatch_log_group.Logs', path: 'stack/Logs' });
    expect(finding.construct).toBe(group);
  });
});
