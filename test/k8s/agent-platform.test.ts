/**
 * AgentPlatform, AwsSecretStore and IRSA (`awsRole`): the Kubernetes side of the platform spec,
 * every shared name derived from it, valid against Kubernetes 1.28 and the CRD schemas.
 */
import { Duration } from 'cdk8s';
import { NetworkPolicyIpBlock, ServiceAccount } from 'cdk8s-plus-28';
import { platform as spec } from '../../examples/platform';
import {
  AgentPlatform,
  AgentService,
  AgentTool,
  AwsRole,
  checkManifests,
  formatFinding,
  AwsSecretStore,
  GatewayCache,
  IRSA_ROLE_ANNOTATION,
  LlmGateway,
  LlmProvider,
  PRIVATE_EGRESS_ANNOTATION,
  QueueWorker,
  SecretStoreKind,
  WorkerQueue,
  platformNames,
  type PlatformSpec,
} from '../../lib';
import { checkRestricted, validateManifests } from '../support/k8s-validate';
import { chart, find, minimalProps, sidecarJson, synth, type Json } from './helpers';

const names = platformNames(spec);

/** The example's agents on the example spec: gateway, chat agent, SQS worker, Redis from the connection secret. */
function platformChart(platformSpec: PlatformSpec = spec) {
  const c = chart(platformSpec.kubernetes.namespace);
  const platform = new AgentPlatform(c, 'Platform', { spec: platformSpec });
  const gateway = new LlmGateway(c, 'LlmGateway', {
    providers: [LlmProvider.openai({ apiKey: platform.providerKey('openai') }), LlmProvider.anthropic({ apiKey: platform.providerKey('anthropic') })],
    secretStore: platform.secretStoreRef,
    awsRole: platform.roleOf('llm-gateway'),
    store: platform.redisStore(),
    cache: GatewayCache.redis({ ttl: Duration.minutes(5) }),
  });
  const agent = new AgentService(c, 'SupportChat', {
    ...minimalProps({ providers: undefined }),
    gateway,
    secretStore: platform.secretStoreRef,
    awsRole: platform.roleOf('support-chat'),
    store: platform.redisStore(),
  });
  const worker = new QueueWorker(c, 'ResearchWorker', {
    ...minimalProps({ providers: undefined }),
    gateway,
    queue: platform.workerQueue('research-worker'),
    maxTaskDuration: Duration.minutes(10),
    secretStore: platform.secretStoreRef,
    store: platform.redisStore(),
  });
  return { c, platform, gateway, agent, worker };
}

describe('AgentPlatform', () => {
  const { c, platform } = platformChart();
  const objects = synth(c);

  test('passes its own checks at synth (Testing.synth runs them), and every object is valid and restricted', () => {
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
  });

  test('creates the SecretStore the spec names: IRSA ServiceAccount, no mounted token, the spec region', () => {
    const store = find(objects, 'SecretStore', names.secretStore.name);
    expect(store.apiVersion).toBe('external-secrets.io/v1');
    expect(store.metadata.namespace).toBe(spec.kubernetes.namespace);
    expect(store.spec.provider.aws).toEqual({
      service: 'SecretsManager',
      region: spec.aws.region,
      auth: { jwt: { serviceAccountRef: { name: names.secretStore.serviceAccount } } },
    });
    const account = find(objects, 'ServiceAccount', names.secretStore.serviceAccount);
    expect(account.metadata.annotations[IRSA_ROLE_ANNOTATION]).toBe(names.secretStore.roleArn);
    expect(account.automountServiceAccountToken).toBe(false);
    expect(platform.secretStoreRef).toMatchObject({ name: names.secretStore.name, kind: SecretStoreKind.SECRET_STORE });
  });

  test("annotates each agent's, the gateway's and the worker's ServiceAccount with its role from the spec", () => {
    for (const agent of ['llm-gateway', 'support-chat', 'research-worker']) {
      const account = find(objects, 'ServiceAccount', agent);
      expect(account.metadata.annotations).toEqual({
        [IRSA_ROLE_ANNOTATION]: names.agent(agent).roleArn,
        'eks.amazonaws.com/sts-regional-endpoints': 'true',
      });
    }
    expect(platform.roleOf('support-chat').arn).toBe('arn:aws:iam::111122223333:role/acme-agents-support-chat');
  });

  test('the worker consumes the queue the spec names; KEDA reads it with its own role', () => {
    const trigger = find(objects, 'ScaledObject', 'research-worker').spec.triggers[0];
    expect(trigger.metadata).toMatchObject({ queueURL: names.workerQueue('research-worker').queueUrl, awsRegion: spec.aws.region });
    expect(find(objects, 'TriggerAuthentication', 'research-worker').spec).toEqual({ podIdentity: { provider: 'aws', roleArn: names.keda.roleArn } });
    expect(platform.kedaRole.arn).toBe(names.keda.roleArn);
  });

  test('provider keys and the Redis connection come from the secrets the cloud side declares, through the SecretStore', () => {
    const keys = find(objects, 'ExternalSecret', 'llm-gateway-provider-keys').spec;
    expect(keys.secretStoreRef).toEqual({ name: names.secretStore.name, kind: 'SecretStore' });
    expect(keys.data).toEqual([
      { secretKey: 'redis-url', remoteRef: { key: names.redis.connectionSecretName, property: 'url' } },
      { secretKey: 'redis-password', remoteRef: { key: names.redis.connectionSecretName, property: 'auth_token' } },
      { secretKey: 'openai-api-key', remoteRef: { key: names.providerKey('openai').secretName, property: 'api_key' } },
      { secretKey: 'anthropic-api-key', remoteRef: { key: names.providerKey('anthropic').secretName, property: 'api_key' } },
    ]);
    expect(find(objects, 'ExternalSecret', 'support-chat-sidecar-secrets').spec.data.map((d: Json) => d.remoteRef)).toEqual([
      { key: 'acme-agents/redis/connection', property: 'url' },
      { key: 'acme-agents/redis/connection', property: 'auth_token' },
    ]);
  });

  test('the runtime reads the Redis URL and AUTH token as files; egress on 6379 goes to the VPC only', () => {
    expect(sidecarJson(objects, 'support-chat-sidecar-config').store).toMatchObject({
      type: 'redis',
      url: { file: '/var/run/cdk-agents/redis-url/url' },
      password: { file: '/var/run/cdk-agents/redis/password' },
    });
    const egress = find(objects, 'NetworkPolicy', 'support-chat').spec.egress as Json[];
    expect(egress.filter((r) => r.ports.some((p: Json) => p.port === 6379))).toEqual([
      { ports: [{ port: 6379, protocol: 'TCP' }], to: [{ ipBlock: { cidr: spec.aws.vpcCidr } }] },
    ]);
  });

  test('the VPC on the Redis port is declared for the rule pack on each policy; a tool at a private address still is not', () => {
    for (const name of ['llm-gateway', 'support-chat', 'research-worker']) {
      expect(find(objects, 'NetworkPolicy', name).metadata.annotations).toEqual({
        [PRIVATE_EGRESS_ANNOTATION]: `${spec.aws.vpcCidr} 6379 the Redis store of the sidecar (budgets, rate limits, approvals)`,
      });
    }
    // (The minimal agent containers here have no probes: AGT-K8S-20 is not what this is about.)
    const egressFindings = (o: Json[]) => checkManifests(o).filter((f) => f.ruleId === 'AGT-K8S-24');
    expect(egressFindings(objects).map(formatFinding)).toEqual([]);

    const withTool = platformChart();
    withTool.agent.addTool(
      AgentTool.http({ name: 'lookup', description: 'Looks an order up.', parameters: { type: 'object', properties: {} }, endpoint: 'http://10.0.40.7:8080/lookup', peer: NetworkPolicyIpBlock.ipv4(withTool.c, 'Lookup', '10.0.40.7/32') }),
    );
    const policy = find(synth(withTool.c), 'NetworkPolicy', 'support-chat');
    expect(policy.metadata.annotations[PRIVATE_EGRESS_ANNOTATION]).toBe(`${spec.aws.vpcCidr} 6379 the Redis store of the sidecar (budgets, rate limits, approvals)`);
    expect(egressFindings(synth(withTool.c)).map((f) => `${f.ruleId} ${f.object} ${f.problem}`)).toEqual([
      'AGT-K8S-24 NetworkPolicy agents/support-chat lets the agent pods of Deployment agents/support-chat reach 10.0.40.7/32 (in 10.0.0.0/8)',
    ]);
  });

  test('a Redis peer wider than one private range is not declared: it stays a finding to justify', () => {
    const c2 = chart();
    const platform2 = new AgentPlatform(c2, 'Platform', { spec });
    new AgentService(c2, 'SupportChat', {
      ...minimalProps({ providers: undefined }),
      gateway: new LlmGateway(c2, 'LlmGateway', { providers: minimalProps().providers!, secretStore: platform2.secretStoreRef, store: platform2.redisStore() }),
      awsRole: platform2.roleOf('support-chat'),
      secretStore: platform2.secretStoreRef,
      store: platform2.redisStore({ peer: NetworkPolicyIpBlock.ipv4(c2, 'Wide', '0.0.0.0/1') }),
    });
    const objects2 = synth(c2);
    expect(find(objects2, 'NetworkPolicy', 'support-chat').metadata.annotations).toBeUndefined();
    expect(checkManifests(objects2).filter((f) => f.ruleId === 'AGT-K8S-24' && f.object === 'NetworkPolicy agents/support-chat').map((f) => f.problem)).toEqual([
      'lets the agent pods of Deployment agents/support-chat reach 10.0.0.0/8, 100.64.0.0/10',
    ]);
  });

  test('without aws.vpcCidr the Redis peer is the one given', () => {
    const { vpcCidr: _, ...aws } = spec.aws;
    const c2 = chart();
    const platform2 = new AgentPlatform(c2, 'Platform', { spec: { ...spec, aws } });
    expect(platform2.redisPeer).toBeUndefined();
    expect(platform2.redisStore().redis?.peer).toBeUndefined();
  });
});

describe('AwsSecretStore', () => {
  test('fromPlatform: the same store AgentPlatform creates', () => {
    const c = chart();
    const store = AwsSecretStore.fromPlatform(c, 'Store', spec);
    expect(store.name).toBe(names.secretStore.name);
    expect(store.region).toBe(spec.aws.region);
    expect(store.awsRole?.arn).toBe(names.secretStore.roleArn);
    expect(store.ref).toMatchObject({ name: 'aws-secrets-manager', kind: SecretStoreKind.SECRET_STORE });
    expect(validateManifests(synth(c))).toEqual([]);
  });

  test('bring-your-own ServiceAccount: none is created, the store authenticates as it', () => {
    const c = chart();
    const existing = ServiceAccount.fromServiceAccountName(c, 'Existing', 'eso-reader');
    new AwsSecretStore(c, 'Store', { name: 'aws', region: 'eu-west-1', serviceAccount: existing });
    const objects = synth(c);
    expect(objects.filter((o) => o.kind === 'ServiceAccount')).toEqual([]);
    expect(find(objects, 'SecretStore', 'aws').spec.provider.aws.auth.jwt.serviceAccountRef).toEqual({ name: 'eso-reader' });
  });

  test('its own ServiceAccount name, and the default store name', () => {
    const c = chart();
    new AwsSecretStore(c, 'Store', { region: 'eu-west-1', awsRole: AwsRole.fromArn('arn:aws:iam::111122223333:role/eso'), serviceAccountName: 'eso' });
    const objects = synth(c);
    expect(find(objects, 'ServiceAccount', 'eso').metadata.annotations[IRSA_ROLE_ANNOTATION]).toBe('arn:aws:iam::111122223333:role/eso');
    expect(find(objects, 'SecretStore', 'aws-secrets-manager').spec.provider.aws.region).toBe('eu-west-1');
  });
});

describe('awsRole (IRSA) without the platform', () => {
  const role = AwsRole.fromArn('arn:aws:iam::111122223333:role/support');

  test('AgentService: annotation, regional STS, HTTPS egress to public addresses', () => {
    const c = chart();
    new AgentService(c, 'SupportChat', minimalProps({ awsRole: role, providers: [LlmProvider.openAiCompatible({ name: 'local', baseUrl: 'http://llm.models.svc:8000/v1' })] }));
    const objects = synth(c);
    expect(find(objects, 'ServiceAccount', 'support-chat').metadata.annotations[IRSA_ROLE_ANNOTATION]).toBe(role.arn);
    const egress = find(objects, 'NetworkPolicy', 'support-chat').spec.egress as Json[];
    expect(egress.some((r) => r.ports[0].port === 443 && r.to[0].ipBlock?.cidr === '0.0.0.0/0')).toBe(true);
  });

  test('LlmGateway', () => {
    const c = chart();
    const gateway = new LlmGateway(c, 'LlmGateway', { providers: minimalProps().providers!, awsRole: role });
    new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway }));
    expect(find(synth(c), 'ServiceAccount', 'llm-gateway').metadata.annotations[IRSA_ROLE_ANNOTATION]).toBe(role.arn);
  });

  test("QueueWorker: 'awsRole' or the queue's roleArn, the same role either way", () => {
    const queueUrl = 'https://sqs.eu-central-1.amazonaws.com/111122223333/tasks';
    for (const [awsRole, roleArn] of [[role, undefined], [undefined, role.arn], [role, role.arn]] as const) {
      const c = chart();
      new QueueWorker(c, 'Worker', { ...minimalProps(), awsRole, queue: WorkerQueue.sqs({ queueUrl, roleArn }), maxTaskDuration: Duration.minutes(1) });
      expect(find(synth(c), 'ServiceAccount', 'worker').metadata.annotations[IRSA_ROLE_ANNOTATION]).toBe(role.arn);
    }
  });

  test('AwsRole: account and name from the ARN', () => {
    expect(AwsRole.fromArn('arn:aws-us-gov:iam::111122223333:role/team/agent')).toMatchObject({ accountId: '111122223333', roleName: 'team/agent' });
  });
});
