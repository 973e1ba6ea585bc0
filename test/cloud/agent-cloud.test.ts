/**
 * AgentCloud on the example platform: the whole Terraform output as a snapshot, then what matters
 * asserted one by one: names from the spec (the contract with the Kubernetes side), encryption,
 * failover, least privilege, the bridge secret, monitoring and outputs; and zero rule findings.
 */
import { CloudwatchDashboard } from '@cdktf/provider-aws/lib/cloudwatch-dashboard';
import { CloudwatchLogGroup } from '@cdktf/provider-aws/lib/cloudwatch-log-group';
import { CloudwatchMetricAlarm } from '@cdktf/provider-aws/lib/cloudwatch-metric-alarm';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { KmsKey } from '@cdktf/provider-aws/lib/kms-key';
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretRotation } from '@cdktf/provider-aws/lib/secretsmanager-secret-rotation';
import { SnsTopic } from '@cdktf/provider-aws/lib/sns-topic';
import { SqsQueue } from '@cdktf/provider-aws/lib/sqs-queue';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';
import { Testing } from 'cdktf';
import { setupJest } from 'cdktf/lib/testing/adapters/jest';
import { platform } from '../../examples/platform';
import { CloudRules, platformNames, ProviderKeyRotation } from '../../lib/cloud';
import { agentCloud, awsStack, exampleStack, logicalIdWhere, resourceWhere, synthJson, type TerraformJson } from './helpers';

setupJest();

const names = platformNames(platform);

describe('AgentCloud (the example platform)', () => {
  const stack = exampleStack();
  const synth = Testing.synth(stack);
  const tf: TerraformJson = JSON.parse(synth);

  test('snapshot of the whole Terraform output', () => {
    expect(synth).toMatchSnapshot();
  });

  test('passes the cloud rule pack with zero findings, and synth with validations', () => {
    expect(CloudRules.check(stack)).toEqual([]);
    expect(() => Testing.synth(stack, true)).not.toThrow();
  });

  describe('names come from the platform spec (the contract with the Kubernetes side)', () => {
    test('an IAM role per ServiceAccount, trusting exactly that namespace/name through the cluster OIDC provider', () => {
      const serviceAccounts = [
        ...names.agents().map((a) => ({ roleName: a.roleName, namespace: a.namespace, serviceAccount: a.serviceAccount })),
        names.secretStore,
        names.keda,
      ];
      expect(Object.keys(tf.resource.aws_iam_role)).toHaveLength(serviceAccounts.length);
      for (const sa of serviceAccounts) {
        const trust = JSON.parse(resourceWhere(tf, 'aws_iam_role', 'name', sa.roleName).assume_role_policy);
        expect(trust.Statement).toEqual([
          {
            Sid: 'ServiceAccountViaIrsa',
            Effect: 'Allow',
            Principal: { Federated: names.oidcProviderArn },
            Action: 'sts:AssumeRoleWithWebIdentity',
            Condition: {
              StringEquals: {
                [`${names.oidcIssuer}:sub`]: `system:serviceaccount:${sa.namespace}:${sa.serviceAccount}`,
                [`${names.oidcIssuer}:aud`]: 'sts.amazonaws.com',
              },
            },
          },
        ]);
      }
      // The role ARN the Kubernetes side writes before apply is the one AWS will give the role.
      expect(names.agent('support-chat').roleArn).toBe(`arn:aws:iam::${platform.aws.accountId}:role/${names.agent('support-chat').roleName}`);
    });

    test('queue, dead-letter queue, provider key secrets and the Redis connection secret by their spec names', () => {
      const queue = names.workerQueue('research-worker');
      expect(resourceWhere(tf, 'aws_sqs_queue', 'name', queue.queueName)).toBeDefined();
      expect(resourceWhere(tf, 'aws_sqs_queue', 'name', queue.deadLetterQueueName)).toBeDefined();
      for (const key of names.providerKeys()) expect(resourceWhere(tf, 'aws_secretsmanager_secret', 'name', key.secretName)).toBeDefined();
      expect(resourceWhere(tf, 'aws_secretsmanager_secret', 'name', names.redis.connectionSecretName)).toBeDefined();
      expect(resourceWhere(tf, 'aws_elasticache_replication_group', 'replication_group_id', names.redis.replicationGroupId)).toBeDefined();
    });
  });

  describe('Redis', () => {
    test('encrypted in transit and at rest with the platform key, AUTH, Multi-AZ failover, snapshots', () => {
      const keyId = Object.keys(tf.resource.aws_kms_key)[0];
      expect(synth).toHaveResourceWithProperties(ElasticacheReplicationGroup, {
        replication_group_id: 'acme-agents-redis',
        engine: 'redis',
        transit_encryption_enabled: true,
        transit_encryption_mode: 'required',
        at_rest_encryption_enabled: 'true',
        kms_key_id: `\${aws_kms_key.${keyId}.arn}`,
        automatic_failover_enabled: true,
        multi_az_enabled: true,
        num_cache_clusters: 2,
        snapshot_retention_limit: 7,
        port: 6379,
      });
    });

    test('in private subnets, reachable only from the cluster security group on 6379', () => {
      expect(tf.resource.aws_elasticache_subnet_group[Object.keys(tf.resource.aws_elasticache_subnet_group)[0]].subnet_ids).toEqual([
        'subnet-0a1b2c3d4e5f60001',
        'subnet-0a1b2c3d4e5f60002',
        'subnet-0a1b2c3d4e5f60003',
      ]);
      expect(Object.values(tf.resource.aws_vpc_security_group_ingress_rule)).toHaveLength(1);
      expect(synth).toHaveResourceWithProperties(VpcSecurityGroupIngressRule, {
        referenced_security_group_id: 'sg-0a1b2c3d4e5f67890',
        ip_protocol: 'tcp',
        from_port: 6379,
        to_port: 6379,
      });
      const group = Object.values(tf.resource.aws_security_group)[0];
      expect(group.vpc_id).toBe('vpc-0a1b2c3d4e5f67890');
      expect(group.ingress).toBeUndefined();
      expect(group.egress).toBeUndefined();
    });

    test('the AUTH token is generated into Secrets Manager, pinned, and reaches the group from there', () => {
      const tokenSourceId = Object.keys(tf.data!.aws_secretsmanager_random_password).find((id) => id.startsWith('AgentCloud_Redis_AuthTokenSource'))!;
      expect(tf.data!.aws_secretsmanager_random_password[tokenSourceId]).toEqual({ exclude_punctuation: true, password_length: 64 });
      const tokenSecretId = logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', names.redis.authTokenSecretName);
      const [versionId, version] = Object.entries(tf.resource.aws_secretsmanager_secret_version).find(([, v]) => v.secret_id.includes(tokenSecretId))!;
      expect(version.secret_string).toBe(`\${data.aws_secretsmanager_random_password.${tokenSourceId}.random_password}`);
      expect(version.lifecycle).toEqual({ ignore_changes: ['secret_string'] });
      const group = Object.values(tf.resource.aws_elasticache_replication_group)[0];
      expect(group.auth_token).toBe(`\${aws_secretsmanager_secret_version.${versionId}.secret_string}`);
      expect(group.auth_token_update_strategy).toBe('ROTATE');
    });

    test('the bridge: Terraform writes { url: rediss://<primary endpoint>:6379, auth_token } into the connection secret', () => {
      const groupId = Object.keys(tf.resource.aws_elasticache_replication_group)[0];
      const connectionId = logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', names.redis.connectionSecretName);
      const version = Object.values(tf.resource.aws_secretsmanager_secret_version).find((v) => v.secret_id.includes(connectionId))!;
      expect(version.secret_string).toContain(`"${names.redis.urlProperty}" = "rediss://\${aws_elasticache_replication_group.${groupId}.primary_endpoint_address}:6379"`);
      expect(version.secret_string).toMatch(new RegExp(`"${names.redis.authTokenProperty}" = aws_secretsmanager_secret_version\\.[A-Za-z0-9_]+\\.secret_string`));
      expect(version.secret_string).toMatch(/^\$\{jsonencode\(/);
    });

    test('slow and engine logs go to log groups with retention and the platform key', () => {
      for (const log of ['slow-log', 'engine-log']) {
        expect(synth).toHaveResourceWithProperties(CloudwatchLogGroup, { name: `/cdk-agents/acme-agents/redis/${log}`, retention_in_days: 365 });
      }
      for (const group of Object.values(tf.resource.aws_cloudwatch_log_group)) expect(group.kms_key_id).toMatch(/^\$\{aws_kms_key\./);
    });
  });

  describe('queues', () => {
    test('the worker queue: KMS, long polling, redrive to its dead-letter queue after maxReceiveCount', () => {
      const dlqId = logicalIdWhere(tf, 'aws_sqs_queue', 'name', 'acme-agents-research-worker-dlq');
      const queue = resourceWhere(tf, 'aws_sqs_queue', 'name', 'acme-agents-research-worker');
      expect(queue.kms_master_key_id).toMatch(/^\$\{aws_kms_key\./);
      expect(queue.visibility_timeout_seconds).toBe(900);
      expect(queue.receive_wait_time_seconds).toBe(20);
      expect(JSON.parse(queue.redrive_policy)).toEqual({ deadLetterTargetArn: `\${aws_sqs_queue.${dlqId}.arn}`, maxReceiveCount: 3 });
      expect(synth).toHaveResourceWithProperties(SqsQueue, { name: 'acme-agents-research-worker-dlq', message_retention_seconds: 1_209_600 });
    });

    test('both queues deny every request without TLS', () => {
      const policies = Object.values(tf.resource.aws_sqs_queue_policy);
      expect(policies).toHaveLength(2);
      for (const policy of policies) {
        expect(JSON.parse(policy.policy).Statement).toEqual([
          expect.objectContaining({ Effect: 'Deny', Principal: '*', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]);
      }
    });

    test('only the worker queue may redrive into the dead-letter queue', () => {
      const queueId = logicalIdWhere(tf, 'aws_sqs_queue', 'name', 'acme-agents-research-worker');
      const allow = Object.values(tf.resource.aws_sqs_queue_redrive_allow_policy)[0];
      expect(JSON.parse(allow.redrive_allow_policy)).toEqual({ redrivePermission: 'byQueue', sourceQueueArns: [`\${aws_sqs_queue.${queueId}.arn}`] });
    });
  });

  describe('least privilege', () => {
    const policyOf = (roleName: string) => {
      const roleId = logicalIdWhere(tf, 'aws_iam_role', 'name', roleName);
      const policy = Object.values(tf.resource.aws_iam_role_policy).find((p) => p.role === `\${aws_iam_role.${roleId}.name}`);
      return policy && JSON.parse(policy.policy);
    };

    test('the worker receives and deletes on its queue only, and decrypts only through SQS', () => {
      const queueId = logicalIdWhere(tf, 'aws_sqs_queue', 'name', 'acme-agents-research-worker');
      expect(policyOf('acme-agents-research-worker').Statement).toEqual([
        {
          Sid: 'ConsumeResearchWorkerQueue',
          Effect: 'Allow',
          Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          Resource: `\${aws_sqs_queue.${queueId}.arn}`,
        },
        expect.objectContaining({ Sid: 'QueueKeyViaSqs', Action: ['kms:Decrypt'], Condition: { StringEquals: { 'kms:ViaService': ['sqs.eu-central-1.amazonaws.com'] } } }),
      ]);
    });

    test('the producer may send, and nothing else', () => {
      const statements = policyOf('acme-agents-support-chat').Statement;
      expect(statements.map((s: any) => s.Action)).toEqual([['sqs:SendMessage', 'sqs:GetQueueUrl'], ['kms:Decrypt', 'kms:GenerateDataKey']]);
    });

    test('an agent without AWS needs gets a role with no permissions', () => {
      expect(policyOf('acme-agents-llm-gateway')).toBeUndefined();
    });

    test('the SecretStore reads exactly the provider keys, the Redis connection and the generated secrets, not the raw token', () => {
      const statement = policyOf('acme-agents-secret-store').Statement[0];
      expect(statement.Action).toEqual(['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret']);
      const readable = [
        'acme-agents/providers/openai',
        'acme-agents/providers/anthropic',
        'acme-agents/redis/connection',
        'acme-agents/gateways/llm-gateway/signing-keys',
        'acme-agents/agents/support-chat/approver-token',
      ].map(
        (name) => `\${aws_secretsmanager_secret.${logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', name)}.arn}`,
      );
      expect(statement.Resource).toEqual(readable);
    });

    test('KEDA reads queue attributes only', () => {
      expect(policyOf('acme-agents-keda').Statement.map((s: any) => s.Action)).toEqual([['sqs:GetQueueAttributes']]);
    });

    test('no action anywhere has a wildcard', () => {
      for (const policy of Object.values(tf.resource.aws_iam_role_policy)) {
        for (const statement of JSON.parse(policy.policy).Statement) for (const action of statement.Action) expect(action).not.toContain('*');
      }
    });
  });

  describe('secrets', () => {
    test('provider key secrets: KMS, no version (the key never enters Terraform state), waiver recorded', () => {
      expect(synth).toHaveResourceWithProperties(SecretsmanagerSecret, { name: 'acme-agents/providers/openai', recovery_window_in_days: 30 });
      const versions = Object.values(tf.resource.aws_secretsmanager_secret_version).map((v) => v.secret_id);
      for (const provider of ['openai', 'anthropic']) {
        const id = logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', `acme-agents/providers/${provider}`);
        expect(versions.some((v) => v.includes(id))).toBe(false);
      }
      expect(synth).not.toHaveResource(SecretsmanagerSecretRotation);
      // The waiver's reason sits next to the secret in the Terraform JSON ("//" is ignored by Terraform).
      const raw = stack.toTerraform() as TerraformJson;
      const secret = Object.values(raw.resource.aws_secretsmanager_secret).find((s) => s.name === 'acme-agents/providers/openai')!;
      expect(secret['//'].cdk_agents_suppressions['AGT-AWS-10']).toMatch(/^Rotation waived: OpenAI and Anthropic keys are minted/);
    });

    test('every secret is encrypted with the platform key', () => {
      for (const secret of Object.values(tf.resource.aws_secretsmanager_secret)) expect(secret.kms_key_id).toMatch(/^\$\{aws_kms_key\./);
    });
  });

  describe('the KMS key', () => {
    test('rotates, and lets only CloudWatch Logs (for the platform log groups) and CloudWatch alarms use it besides IAM', () => {
      expect(synth).toHaveResourceWithProperties(KmsKey, { enable_key_rotation: true, deletion_window_in_days: 30 });
      const policy = JSON.parse(Object.values(tf.resource.aws_kms_key)[0].policy);
      expect(policy.Statement.map((s: any) => s.Sid)).toEqual(['EnableIamPolicies', 'CloudWatchLogsOfThePlatform', 'CloudWatchAlarmsToTheTopic']);
      expect(policy.Statement[1].Condition.ArnLike['kms:EncryptionContext:aws:logs:arn']).toBe('arn:aws:logs:eu-central-1:111122223333:log-group:/cdk-agents/acme-agents/*');
      expect(Object.values(tf.resource.aws_kms_alias)[0].name).toBe('alias/acme-agents');
    });
  });

  describe('observability', () => {
    test('an encrypted alarm topic with the on-call subscription', () => {
      expect(synth).toHaveResourceWithProperties(SnsTopic, { name: 'acme-agents-alarms' });
      expect(Object.values(tf.resource.aws_sns_topic)[0].kms_master_key_id).toMatch(/^\$\{aws_kms_key\./);
      expect(Object.values(tf.resource.aws_sns_topic_subscription)[0]).toMatchObject({ protocol: 'email', endpoint: 'oncall@acme.example' });
    });

    test('alarms on queue age, depth, dead letters and Redis CPU, memory, evictions per node, all to the topic', () => {
      const alarms = Object.values(tf.resource.aws_cloudwatch_metric_alarm);
      expect(alarms.map((a) => a.alarm_name).sort()).toEqual(
        [
          'acme-agents-research-worker-dead-letters',
          'acme-agents-research-worker-queue-age',
          'acme-agents-research-worker-queue-depth',
          'acme-agents-redis-cpu-001',
          'acme-agents-redis-cpu-002',
          'acme-agents-redis-evictions-001',
          'acme-agents-redis-evictions-002',
          'acme-agents-redis-memory-001',
          'acme-agents-redis-memory-002',
        ].sort(),
      );
      const topicId = Object.keys(tf.resource.aws_sns_topic)[0];
      for (const alarm of alarms) {
        expect(alarm.alarm_actions).toEqual([`\${aws_sns_topic.${topicId}.arn}`]);
        expect(alarm.ok_actions).toEqual([`\${aws_sns_topic.${topicId}.arn}`]);
      }
      expect(synth).toHaveResourceWithProperties(CloudwatchMetricAlarm, {
        alarm_name: 'acme-agents-research-worker-dead-letters',
        metric_name: 'ApproximateNumberOfMessagesVisible',
        dimensions: { QueueName: 'acme-agents-research-worker-dlq' },
        threshold: 0,
      });
    });

    test('the dashboard: queue depth, age of oldest message, DLQ depth, Redis CPU, memory, evictions, connections', () => {
      expect(synth).toHaveResourceWithProperties(CloudwatchDashboard, { dashboard_name: 'acme-agents' });
      const body = JSON.parse(Object.values(tf.resource.aws_cloudwatch_dashboard)[0].dashboard_body);
      const metrics = body.widgets.map((w: any) => [w.properties.title, w.properties.metrics.map((m: any[]) => `${m[1]} ${m[3]}`)]);
      expect(metrics).toEqual([
        ['Queue depth (messages waiting)', ['ApproximateNumberOfMessagesVisible acme-agents-research-worker']],
        ['Age of oldest message (s)', ['ApproximateAgeOfOldestMessage acme-agents-research-worker']],
        ['Dead-letter queue depth', ['ApproximateNumberOfMessagesVisible acme-agents-research-worker-dlq']],
        ['Redis engine CPU (%)', ['EngineCPUUtilization acme-agents-redis-001', 'EngineCPUUtilization acme-agents-redis-002']],
        ['Redis memory used (% of maxmemory)', ['DatabaseMemoryUsagePercentage acme-agents-redis-001', 'DatabaseMemoryUsagePercentage acme-agents-redis-002']],
        ['Redis evictions', ['Evictions acme-agents-redis-001', 'Evictions acme-agents-redis-002']],
        ['Redis connections', ['CurrConnections acme-agents-redis-001', 'CurrConnections acme-agents-redis-002']],
      ]);
      expect(body.widgets.every((w: any) => w.properties.region === 'eu-central-1')).toBe(true);
    });
  });

  test('outputs for everything a human or pipeline needs', () => {
    expect(Object.keys(tf.output).sort()).toEqual(
      [
        'alarm_topic_arn',
        'dashboard_url',
        'generated_secrets',
        'kms_key_arn',
        'provider_key_secrets',
        'redis_connection_secret',
        'redis_primary_endpoint',
        'redis_security_group_id',
        'secret_store',
        'service_account_roles',
        'worker_queues',
      ].sort(),
    );
    expect(Object.keys(tf.output.service_account_roles.value).sort()).toEqual(
      ['agents/aws-secrets-manager', 'agents/llm-gateway', 'agents/research-worker', 'agents/support-chat', 'keda/keda-operator'].sort(),
    );
    expect(tf.output.redis_connection_secret.value).toMatchObject({ name: 'acme-agents/redis/connection', url_property: 'url', auth_token_property: 'auth_token' });
    expect(tf.output.secret_store.value).toMatchObject({ name: 'aws-secrets-manager', namespace: 'agents', service_account: 'aws-secrets-manager', region: 'eu-central-1' });
    expect(Object.keys(tf.output.worker_queues.value['research-worker']).sort()).toEqual(['arn', 'dead_letter_arn', 'dead_letter_url', 'url']);
  });
});

describe('AgentCloud options and relationships', () => {
  test('provider key rotation by a Lambda function: a rotation per secret, not started before a value exists', () => {
    const stack = awsStack();
    agentCloud(stack, { providerKeyRotation: ProviderKeyRotation.withLambda({ functionArn: 'arn:aws:lambda:eu-central-1:111122223333:function:rotate-llm-key', everyDays: 60 }) });
    const synth = Testing.synth(stack);
    expect(synth).toHaveResourceWithProperties(SecretsmanagerSecretRotation, {
      rotation_lambda_arn: 'arn:aws:lambda:eu-central-1:111122223333:function:rotate-llm-key',
      rotation_rules: { automatically_after_days: 60 },
      rotate_immediately: false,
    });
    expect(Object.keys(JSON.parse(synth).resource.aws_secretsmanager_secret_rotation)).toHaveLength(2);
    expect(CloudRules.check(stack)).toEqual([]);
  });

  test('roleOf(agent).addToPolicy after construction reaches the output', () => {
    const stack = awsStack();
    const cloud = agentCloud(stack);
    cloud.roleOf('llm-gateway').addToPolicy({ sid: 'InvokeBedrock', actions: ['bedrock:InvokeModel'], resources: ['arn:aws:bedrock:eu-central-1::foundation-model/anthropic.claude-sonnet-4-5'] });
    const tf = synthJson(stack);
    const roleId = logicalIdWhere(tf, 'aws_iam_role', 'name', 'acme-agents-llm-gateway');
    const policy = Object.values(tf.resource.aws_iam_role_policy).find((p) => p.role === `\${aws_iam_role.${roleId}.name}`)!;
    expect(JSON.parse(policy.policy).Statement[0].Action).toEqual(['bedrock:InvokeModel']);
  });

  test('queueOf, providerKeySecretOf and the public children', () => {
    const cloud = agentCloud(awsStack());
    expect(cloud.queueOf('research-worker').queueNames.queueName).toBe('acme-agents-research-worker');
    expect(cloud.providerKeySecretOf('openai').keyNames.secretName).toBe('acme-agents/providers/openai');
    expect(cloud.redis.node.defaultChild).toBe(cloud.redis.replicationGroup);
    expect(cloud.queueOf('research-worker').node.defaultChild).toBe(cloud.queueOf('research-worker').queue);
    expect(cloud.roleOf('support-chat').node.defaultChild).toBe(cloud.roleOf('support-chat').role);
    expect(cloud.key.node.defaultChild).toBe(cloud.key.key);
    expect(cloud.monitoring.node.defaultChild).toBe(cloud.monitoring.dashboard);
  });

  test('sizing, retention, thresholds, tags and a permissions boundary', () => {
    const stack = awsStack();
    agentCloud(stack, {
      redis: { nodeType: 'cache.r7g.large', numCacheClusters: 3, snapshotRetentionDays: 14 },
      logRetentionDays: 90,
      alarmThresholds: { queueAgeSeconds: 120 },
      permissionsBoundaryArn: 'arn:aws:iam::111122223333:policy/boundary',
      tags: { team: 'platform' },
    });
    const synth = Testing.synth(stack);
    expect(synth).toHaveResourceWithProperties(ElasticacheReplicationGroup, {
      node_type: 'cache.r7g.large',
      num_cache_clusters: 3,
      snapshot_retention_limit: 14,
      tags: { team: 'platform', 'cdk-agents:platform': 'acme-agents' },
    });
    expect(synth).toHaveResourceWithProperties(CloudwatchLogGroup, { retention_in_days: 90 });
    expect(synth).toHaveResourceWithProperties(CloudwatchMetricAlarm, { alarm_name: 'acme-agents-research-worker-queue-age', threshold: 120 });
    expect(synth).toHaveResourceWithProperties(CloudwatchMetricAlarm, { alarm_name: 'acme-agents-redis-cpu-003' });
    for (const role of Object.values(JSON.parse(synth).resource.aws_iam_role as Record<string, any>)) {
      expect(role.permissions_boundary).toBe('arn:aws:iam::111122223333:policy/boundary');
    }
  });

  test('gateway signing keys and approver tokens are generated: one kept value per property, KMS, written as JSON, never ignored as a whole', () => {
    const tf = JSON.parse(Testing.synth(exampleStack())) as TerraformJson;
    const keysId = logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', 'acme-agents/gateways/llm-gateway/signing-keys');
    const keys = tf.resource.aws_secretsmanager_secret[keysId];
    expect(keys.kms_key_id).toMatch(/^\$\{aws_kms_key\./);
    expect(keys.description).toContain('"support-chat": "...", "research-worker": "..."');
    const version = Object.values(tf.resource.aws_secretsmanager_secret_version).find((v) => v.secret_id === `\${aws_secretsmanager_secret.${keysId}.id}`)!;
    // No ignore_changes on the JSON: a new agent adds its key; the kept values keep the others as they are.
    expect(version.lifecycle).toBeUndefined();
    const kept = (agent: string) => Object.entries(tf.resource.terraform_data).find(([id]) => id.startsWith(`AgentCloud_LlmGatewaySigningKeys_${agent}Value`))!;
    const [supportId, support] = kept('SupportChat');
    const [researchId] = kept('ResearchWorker');
    expect(version.secret_string).toBe(
      `\${jsonencode({"support-chat" = terraform_data.${supportId}.output.value, "research-worker" = terraform_data.${researchId}.output.value})}`,
    );
    // Each value is drawn once by Secrets Manager and kept: a fresh draw on a later plan is ignored.
    expect(support.lifecycle).toEqual({ ignore_changes: ['input'] });
    const sourceId = /^\$\{sensitive\(data\.aws_secretsmanager_random_password\.([^.]+)\.random_password\)\}$/.exec(support.input.value)![1];
    expect(tf.data!.aws_secretsmanager_random_password[sourceId]).toEqual({ exclude_punctuation: true, password_length: 48 });

    const tokenId = logicalIdWhere(tf, 'aws_secretsmanager_secret', 'name', 'acme-agents/agents/support-chat/approver-token');
    const tokenVersion = Object.values(tf.resource.aws_secretsmanager_secret_version).find((v) => v.secret_id === `\${aws_secretsmanager_secret.${tokenId}.id}`)!;
    expect(tokenVersion.secret_string).toMatch(/^\$\{jsonencode\(\{"token" = terraform_data\.AgentCloud_SupportChatApproverToken_TokenValue_[0-9A-F]+\.output\.value\}\)\}$/);
    expect(tf.output.generated_secrets.value).toMatchObject({
      'llm-gateway/signing-keys': { name: 'acme-agents/gateways/llm-gateway/signing-keys', properties: ['support-chat', 'research-worker'] },
      'support-chat/approver-token': { name: 'acme-agents/agents/support-chat/approver-token', properties: ['token'] },
    });
  });

  test('a spec without gateways or approvals generates no secret', () => {
    const stack = awsStack();
    agentCloud(stack, { spec: { ...platform, agents: platform.agents.map(({ name, providerKeys }) => ({ name, providerKeys })) } });
    const tf = synthJson(stack, true);
    expect(tf.resource.terraform_data).toBeUndefined();
    expect(Object.keys(tf.output.generated_secrets.value)).toEqual([]);
  });

  test("the spec's aws.vpcCidr is checked against the VPC when Terraform plans (the Kubernetes side opens Redis egress to it only)", () => {
    const tf = JSON.parse(Testing.synth(exampleStack())) as TerraformJson;
    const vpcs = Object.values(tf.data!.aws_vpc);
    expect(vpcs).toHaveLength(1);
    expect(vpcs[0].id).toBe('vpc-0a1b2c3d4e5f67890');
    const [check] = vpcs[0].lifecycle.postcondition;
    expect(check.condition).toBe(`\${contains(self.cidr_block_associations[*].cidr_block, "${platform.aws.vpcCidr}")}`);
    expect(check.error_message).toContain(`The platform spec's aws.vpcCidr (${platform.aws.vpcCidr}) is not a CIDR block of the VPC ${'vpc-0a1b2c3d4e5f67890'}`);
    expect(check.error_message).toContain('Set aws.vpcCidr in the platform spec');
    // And each Redis subnet inside it: its network at the spec's prefix length is the spec's block.
    const subnets = Object.values(tf.data!.aws_subnet);
    expect(subnets.map((s) => s.id)).toEqual(['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60002', 'subnet-0a1b2c3d4e5f60003']);
    for (const subnet of subnets) {
      expect(subnet.lifecycle.postcondition[0].condition).toBe(
        '${tonumber(split("/", self.cidr_block)[1]) >= 16 && cidrsubnet(format("%s/%d", split("/", self.cidr_block)[0], 16), 0, 0) == "10.0.0.0/16"}',
      );
      expect(subnet.lifecycle.postcondition[0].error_message).toContain(`The Redis subnet ${subnet.id} is not inside the platform spec's aws.vpcCidr (10.0.0.0/16)`);
    }

    // Without vpcCidr, nothing to check (the Kubernetes side then needs a Redis peer of its own).
    const { vpcCidr: _, ...aws } = platform.aws;
    const stack = awsStack();
    agentCloud(stack, { spec: { ...platform, aws } });
    expect((synthJson(stack, true) as any).data?.aws_vpc).toBeUndefined();
    expect((synthJson(stack, true) as any).data?.aws_subnet).toBeUndefined();
  });

  test('a spec without queues or provider keys: no KEDA role, no queue widgets, no rotation needed', () => {
    const stack = awsStack();
    agentCloud(stack, { spec: { ...platform, workerQueues: [], providerKeys: [], agents: [{ name: 'support-chat' }] }, providerKeyRotation: undefined });
    const tf = synthJson(stack, true);
    expect(Object.values(tf.resource.aws_iam_role).map((r) => r.name).sort()).toEqual(['acme-agents-secret-store', 'acme-agents-support-chat']);
    expect(tf.resource.aws_sqs_queue).toBeUndefined();
    expect(JSON.parse(Object.values(tf.resource.aws_cloudwatch_dashboard)[0].dashboard_body).widgets).toHaveLength(4);
  });
});
