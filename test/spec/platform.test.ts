/**
 * The platform spec: defaults, the names both sides derive from it (exact strings: the Kubernetes
 * side and AWS must agree on them byte for byte), and every bad input rejected with its field.
 */
import { platform } from '../../examples/platform';
import {
  IRSA_ROLE_ANNOTATION,
  parsePlatformSpec,
  PlatformSpecError,
  platformNames,
  type PlatformSpec,
} from '../../lib/spec';

const base: PlatformSpec = {
  name: 'acme-agents',
  aws: { region: 'eu-central-1', accountId: '111122223333' },
  kubernetes: { namespace: 'agents', cluster: { oidcIssuerUrl: 'https://oidc.eks.eu-central-1.amazonaws.com/id/ABC123' } },
  agents: [{ name: 'support-chat' }, { name: 'research-worker' }, { name: 'llm-gateway', providerKeys: ['openai'] }],
  workerQueues: [{ worker: 'research-worker', producers: ['support-chat'] }],
  providerKeys: [{ name: 'openai' }],
};

/** The spec with one change, for the bad-input cases. */
function spec(change: (s: any) => void): PlatformSpec {
  const copy = structuredClone(base) as any;
  change(copy);
  return copy;
}

/** The issues of a spec that must be rejected, as "path: message". */
function issues(input: unknown): string[] {
  try {
    parsePlatformSpec(input as PlatformSpec);
  } catch (error) {
    expect(error).toBeInstanceOf(PlatformSpecError);
    return (error as PlatformSpecError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('the spec was accepted');
}

describe('platform spec', () => {
  test('fills defaults: SecretStore, KEDA, queue settings, provider key references', () => {
    const resolved = parsePlatformSpec(base);
    expect(resolved.kubernetes.secretStore).toEqual({ name: 'aws-secrets-manager', serviceAccount: 'aws-secrets-manager' });
    expect(resolved.kubernetes.keda).toEqual({ namespace: 'keda', serviceAccount: 'keda-operator' });
    expect(resolved.workerQueues[0]).toEqual({
      worker: 'research-worker',
      producers: ['support-chat'],
      visibilityTimeoutSeconds: 300,
      maxReceiveCount: 5,
      messageRetentionSeconds: 345_600,
    });
    expect(resolved.agents[0].providerKeys).toEqual([]);
  });

  test('the example spec is valid', () => {
    expect(() => parsePlatformSpec(platform)).not.toThrow();
  });

  test('a resolved spec parses to itself (names can be derived from either)', () => {
    const resolved = parsePlatformSpec(base);
    expect(parsePlatformSpec(resolved)).toEqual(resolved);
  });
});

describe('platformNames', () => {
  const names = platformNames(base);

  test('agent: ServiceAccount named after the agent, role ARN from the account', () => {
    expect(names.agent('support-chat')).toEqual({
      agent: 'support-chat',
      namespace: 'agents',
      serviceAccount: 'support-chat',
      roleName: 'acme-agents-support-chat',
      roleArn: 'arn:aws:iam::111122223333:role/acme-agents-support-chat',
    });
    expect(names.agents().map((a) => a.serviceAccount)).toEqual(['support-chat', 'research-worker', 'llm-gateway']);
    expect(IRSA_ROLE_ANNOTATION).toBe('eks.amazonaws.com/role-arn');
  });

  test('worker queue and dead-letter queue: names, URLs and ARNs', () => {
    expect(names.workerQueue('research-worker')).toEqual({
      worker: 'research-worker',
      producers: ['support-chat'],
      queueName: 'acme-agents-research-worker',
      queueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/acme-agents-research-worker',
      queueArn: 'arn:aws:sqs:eu-central-1:111122223333:acme-agents-research-worker',
      deadLetterQueueName: 'acme-agents-research-worker-dlq',
      deadLetterQueueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/acme-agents-research-worker-dlq',
      deadLetterQueueArn: 'arn:aws:sqs:eu-central-1:111122223333:acme-agents-research-worker-dlq',
    });
  });

  test('secrets: provider keys by name and property, the Redis connection secret with its two properties', () => {
    expect(names.providerKey('openai')).toEqual({ provider: 'openai', secretName: 'acme-agents/providers/openai', property: 'api_key' });
    expect(names.providerKeysOf('llm-gateway').map((k) => k.secretName)).toEqual(['acme-agents/providers/openai']);
    expect(names.providerKeysOf('support-chat')).toEqual([]);
    expect(names.redis).toEqual({
      replicationGroupId: 'acme-agents-redis',
      port: 6379,
      connectionSecretName: 'acme-agents/redis/connection',
      urlProperty: 'url',
      authTokenProperty: 'auth_token',
      authTokenSecretName: 'acme-agents/redis/auth-token',
    });
  });

  test('SecretStore, KEDA and the OIDC provider', () => {
    expect(names.secretStore).toEqual({
      name: 'aws-secrets-manager',
      region: 'eu-central-1',
      namespace: 'agents',
      serviceAccount: 'aws-secrets-manager',
      roleName: 'acme-agents-secret-store',
      roleArn: 'arn:aws:iam::111122223333:role/acme-agents-secret-store',
    });
    expect(names.keda.roleArn).toBe('arn:aws:iam::111122223333:role/acme-agents-keda');
    expect(names.oidcIssuer).toBe('oidc.eks.eu-central-1.amazonaws.com/id/ABC123');
    expect(names.oidcProviderArn).toBe('arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/ABC123');
    expect(names.serviceAccountSubject('agents', 'support-chat')).toBe('system:serviceaccount:agents:support-chat');
  });

  test('partitions follow the region (China, GovCloud)', () => {
    const china = platformNames(spec((s) => {
      s.aws.region = 'cn-north-1';
      s.kubernetes.cluster.oidcIssuerUrl = 'https://oidc.eks.cn-north-1.amazonaws.com.cn/id/ABC';
    }));
    expect(china.agent('support-chat').roleArn).toBe('arn:aws-cn:iam::111122223333:role/acme-agents-support-chat');
    expect(china.workerQueue('research-worker').queueUrl).toBe('https://sqs.cn-north-1.amazonaws.com.cn/111122223333/acme-agents-research-worker');
    const gov = platformNames(spec((s) => {
      s.aws.region = 'us-gov-west-1';
      s.kubernetes.cluster.oidcIssuerUrl = 'https://oidc.eks.us-gov-west-1.amazonaws.com/id/ABC';
    }));
    expect(gov.partition).toBe('aws-us-gov');
  });

  test('a name the spec does not declare is an error naming the fix', () => {
    expect(() => names.agent('billing')).toThrow("'billing' is not an agent of the platform spec 'acme-agents'; add it to 'agents'");
    expect(() => names.workerQueue('support-chat')).toThrow("add { worker: 'support-chat' } to 'workerQueues'");
    expect(() => names.providerKey('mistral')).toThrow("the secret 'mistral' is referenced but never declared in the platform spec 'acme-agents'; add { name: 'mistral' } to 'providerKeys'");
    expect(() => names.gatewaySigningKeys('support-chat')).toThrow("no agent of the platform spec 'acme-agents' calls providers through 'support-chat'");
    expect(() => names.approverToken('llm-gateway')).toThrow("the approver token of 'llm-gateway' is referenced but never declared");
  });

  test('generated secrets: one signing key per agent declaring the gateway, an approver token per agent with approvals', () => {
    const names = platformNames(platform);
    expect(names.gateways()).toEqual([{ gateway: 'llm-gateway', secretName: 'acme-agents/gateways/llm-gateway/signing-keys', agents: ['support-chat', 'research-worker'] }]);
    expect(names.approverTokens()).toEqual([{ agent: 'support-chat', secretName: 'acme-agents/agents/support-chat/approver-token', property: 'token' }]);
  });
});

describe('platform spec errors name the field and the fix', () => {
  test.each<[string, (s: any) => void, string]>([
    ['a worker queue without a matching worker', (s) => (s.workerQueues[0].worker = 'research'), "workerQueues[0].worker: 'research' names no agent: a worker queue needs its worker; add an agent named 'research' to 'agents'"],
    ['a producer that is not an agent', (s) => (s.workerQueues[0].producers = ['support']), "workerQueues[0].producers[0]: 'support' names no agent"],
    ['a secret referenced but never declared', (s) => (s.agents[2].providerKeys = ['openai', 'anthropic']), "agents[2].providerKeys[1]: the secret 'anthropic' is referenced but never declared; add { name: 'anthropic' } to 'providerKeys'"],
    ['a region mismatch between the cluster and AWS', (s) => (s.aws.region = 'us-east-1'), "kubernetes.cluster.oidcIssuerUrl: the cluster is in eu-central-1 but 'aws.region' is us-east-1: the cloud and Kubernetes sides must be in one region"],
    ['an agent declared twice', (s) => s.agents.push({ name: 'support-chat' }), "agents[3].name: 'support-chat' is declared twice"],
    ['two queues for one worker', (s) => s.workerQueues.push({ worker: 'research-worker' }), "workerQueues[1].worker: 'research-worker' already has a queue"],
    ['a provider key declared twice', (s) => s.providerKeys.push({ name: 'openai' }), "providerKeys[1].name: 'openai' is declared twice"],
    ['an agent colliding with the SecretStore ServiceAccount', (s) => s.agents.push({ name: 'aws-secrets-manager' }), "agents[3].name: 'aws-secrets-manager' is also the SecretStore's ServiceAccount"],
    ['a reserved agent name', (s) => s.agents.push({ name: 'keda' }), "agents[3].name: 'keda' is reserved"],
    ['an IAM role name over 64 characters', (s) => s.agents.push({ name: 'a'.repeat(60) }), 'would be 72 characters (at most 64)'],
    ['a name that is not a DNS label', (s) => (s.name = 'Acme_Agents'), "name: must be lowercase letters, digits and single '-'"],
    ['a name too long for AWS limits', (s) => (s.name = 'a'.repeat(33)), 'name: must be at most 32 characters'],
    ['a bad account id', (s) => (s.aws.accountId = '1234'), 'aws.accountId: must be the 12-digit AWS account id'],
    ['a bad region', (s) => (s.aws.region = 'europe'), "aws.region: must be an AWS region such as 'eu-central-1'"],
    ['a VPC CIDR that is not one', (s) => (s.aws.vpcCidr = '10.0.0.0/33'), "aws.vpcCidr: must be an IPv4 CIDR such as '10.0.0.0/16'"],
    ['a VPC CIDR with host bits set', (s) => (s.aws.vpcCidr = '10.0.0.1/16'), 'aws.vpcCidr: must be the network address of its block (host bits zero'],
    ['an issuer URL with a trailing slash', (s) => (s.kubernetes.cluster.oidcIssuerUrl += '/'), "kubernetes.cluster.oidcIssuerUrl: must be the cluster's OIDC issuer URL, https:// without a trailing '/'"],
    ['no agents', (s) => (s.agents = []), 'agents: must declare at least one agent'],
    ['a visibility timeout over the SQS maximum', (s) => (s.workerQueues[0].visibilityTimeoutSeconds = 50_000), 'workerQueues[0].visibilityTimeoutSeconds: must be at most 43200'],
    ['a misspelled field', (s) => (s.kubernetes.namspace = 'x'), 'kubernetes.namspace: unknown field; check its spelling'],
    ['a gateway that is not an agent', (s) => (s.agents[0].gateway = 'gateway'), "agents[0].gateway: 'gateway' names no agent; declare the gateway as an agent"],
    ['an agent as its own gateway', (s) => (s.agents[2].gateway = 'llm-gateway'), "agents[2].gateway: 'llm-gateway' cannot be its own gateway"],
    ['a gateway that calls through a gateway', (s) => {
      s.agents[0].gateway = 'llm-gateway';
      s.agents[2].gateway = 'research-worker';
    }, "agents[0].gateway: 'llm-gateway' calls providers through a gateway itself"],
  ])('%s', (_, change, expected) => {
    expect(issues(spec(change)).join('\n')).toContain(expected);
  });

  test('every problem is reported at once', () => {
    const found = issues(spec((s) => {
      s.workerQueues[0].worker = 'nobody';
      s.agents[2].providerKeys = ['mistral'];
      s.aws.region = 'us-east-1';
    }));
    expect(found).toHaveLength(3);
  });

  test('a non-EKS issuer is not region-checked (self-managed clusters)', () => {
    expect(() => parsePlatformSpec(spec((s) => (s.kubernetes.cluster.oidcIssuerUrl = 'https://oidc.example.com/cluster-1')))).not.toThrow();
  });

  test('the error message lists each issue by path', () => {
    expect(() => platformNames(spec((s) => (s.workerQueues[0].worker = 'research')))).toThrow(/^invalid platform spec:\n {2}workerQueues\[0\]\.worker: /);
  });
});
