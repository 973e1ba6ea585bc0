/**
 * AgentPlatform, AwsSecretStore and awsRole validation: a name the spec does not declare, a
 * region or namespace that differs from the spec's, a role or queue that is not the spec's, a
 * secret referenced but never declared: each an error naming the field and the fix, at
 * construction or, for what other constructs bring, at synth.
 */
import { Duration } from 'cdk8s';
import { ServiceAccount } from 'cdk8s-plus-28';
import { platform as spec } from '../../examples/platform';
import {
  AgentPlatform,
  AgentService,
  AwsRole,
  AwsSecretStore,
  LlmGateway,
  LlmProvider,
  QueueWorker,
  SecretKey,
  WorkerQueue,
  type AgentServiceProps,
} from '../../lib';
import { chart, minimalProps, synth } from './helpers';

const ROLE = 'arn:aws:iam::111122223333:role/acme-agents-support-chat';

function platformChart() {
  const c = chart(spec.kubernetes.namespace);
  return { c, platform: new AgentPlatform(c, 'Platform', { spec }) };
}

/** An agent on the platform, reaching its provider directly. */
function agent(id: string, overrides: Partial<AgentServiceProps> = {}) {
  const { c, platform } = platformChart();
  new AgentService(c, id, minimalProps(overrides));
  return { c, platform };
}

describe('AgentPlatform errors', () => {
  test('an invalid spec: every field named', () => {
    expect(() => new AgentPlatform(chart(), 'Platform', { spec: { ...spec, aws: { ...spec.aws, region: 'Frankfurt', vpcCidr: '10.0.0.0/33' } } })).toThrow(
      "AgentPlatform: 'spec' is invalid:\n  spec.aws.region: must be an AWS region such as 'eu-central-1'\n  spec.aws.vpcCidr: must be an IPv4 CIDR such as '10.0.0.0/16'",
    );
  });

  test("the chart's namespace differs from the spec's", () => {
    expect(() => new AgentPlatform(chart('default'), 'Platform', { spec })).toThrow(
      "AgentPlatform: the chart's namespace is 'default' but the platform spec's 'kubernetes.namespace' is 'agents': the IAM roles trust ServiceAccounts in 'agents' only. " +
        "Create the chart with { namespace: 'agents' } (spec.kubernetes.namespace), or fix the spec.",
    );
  });

  test('an agent the spec does not declare', () => {
    expect(() => platformChart().platform.roleOf('billing-agent')).toThrow(
      "AgentPlatform: 'billing-agent' is not declared in the platform spec 'acme-agents': add { name: 'billing-agent' } to platform.agents (its IAM role comes from there), " +
        "or fix the name (declared: 'support-chat', 'llm-gateway', 'research-worker').",
    );
  });

  test('a provider key referenced but never declared', () => {
    expect(() => platformChart().platform.providerKey('mistral')).toThrow(
      "AgentPlatform: the secret 'mistral' is referenced but never declared: add { name: 'mistral' } to platform.providerKeys (the cloud side creates the secret from it), or fix the name (declared: 'openai', 'anthropic').",
    );
  });

  test('a queue worker with no declared queue', () => {
    expect(() => platformChart().platform.workerQueue('support-chat')).toThrow(
      "AgentPlatform: the queue worker 'support-chat' has no declared queue: add { worker: 'support-chat' } to platform.workerQueues (the cloud side creates the queue from it), or fix the name (workers with queues: 'research-worker').",
    );
  });

  test('a SecretStore in another region (region mismatch)', () => {
    const c = chart();
    const store = new AwsSecretStore(c, 'Store', { region: 'us-east-1', awsRole: AwsRole.fromArn(ROLE) });
    expect(() => new AgentPlatform(c, 'Platform', { spec, secretStore: store })).toThrow(
      "AgentPlatform: 'secretStore': AwsSecretStore 'aws-secrets-manager' reads region 'us-east-1' but the platform spec's 'aws.region' is 'eu-central-1' (region mismatch): " +
        "the cloud side keeps the secrets in eu-central-1. Set its 'region' to 'eu-central-1', or build it with AwsSecretStore.fromPlatform(scope, id, spec).",
    );
  });

  test('at synth: a SecretStore of the chart in another region', () => {
    const { c } = platformChart();
    new AwsSecretStore(c, 'Other', { name: 'other', region: 'us-east-1', awsRole: AwsRole.fromArn(ROLE) });
    new AgentService(c, 'SupportChat', minimalProps());
    expect(() => synth(c)).toThrow("[test/Platform] AgentPlatform: AwsSecretStore 'other' reads region 'us-east-1' but the platform spec's 'aws.region' is 'eu-central-1' (region mismatch)");
  });

  test('at synth: an agent of the chart the spec does not declare', () => {
    expect(() => synth(agent('BillingAgent').c)).toThrow(
      "[test/Platform] AgentPlatform: AgentService 'billing-agent': 'billing-agent' is not declared in the platform spec 'acme-agents': add { name: 'billing-agent' } to platform.agents",
    );
  });

  test("at synth: an agent in another namespace than the spec's", () => {
    expect(() => synth(agent('SupportChat', { namespace: 'other' }).c)).toThrow(
      "AgentPlatform: AgentService 'support-chat' is in namespace 'other' but its role trusts ServiceAccount agents/support-chat; remove its 'namespace'.",
    );
  });

  test("at synth: an agent annotated with another agent's role", () => {
    const { c, platform } = platformChart();
    new AgentService(c, 'SupportChat', minimalProps({ awsRole: platform.roleOf('llm-gateway') }));
    expect(() => synth(c)).toThrow(
      "AgentPlatform: AgentService 'support-chat''s ServiceAccount is annotated with the role arn:aws:iam::111122223333:role/acme-agents-llm-gateway, " +
        "but the platform spec's role of 'support-chat' is arn:aws:iam::111122223333:role/acme-agents-support-chat, the one trusting its ServiceAccount. Use awsRole: platform.roleOf('support-chat')",
    );
  });

  test('signing keys of an agent no agent calls through, and an approver token the spec does not declare', () => {
    expect(() => platformChart().platform.signingKeys('research-worker')).toThrow(
      "AgentPlatform: no agent of the platform spec 'acme-agents' calls providers through 'research-worker', so it has no signing keys; " +
        "set { gateway: 'research-worker' } on the agents it serves (gateways: llm-gateway).",
    );
    expect(() => platformChart().platform.approverToken('research-worker')).toThrow(
      "AgentPlatform: the approver token of 'research-worker' is referenced but never declared in the platform spec 'acme-agents'; " +
        "set { name: 'research-worker', approvals: true } in 'agents' (agents with approvals: support-chat).",
    );
    expect(() => platformChart().platform.signingKeys('edge-gateway')).toThrow("AgentPlatform: 'edge-gateway' is not declared in the platform spec 'acme-agents'");
  });

  test("at synth: a gateway on the generated signing keys serves exactly the agents the spec gives it", () => {
    const { c, platform } = platformChart();
    const gateway = new LlmGateway(c, 'LlmGateway', {
      providers: minimalProps().providers!,
      secretStore: platform.secretStoreRef,
      signingKeys: platform.signingKeys('llm-gateway'),
    });
    // support-chat is served, as the spec says; research-worker is not, though the spec says it is;
    // and the gateway also serves an agent the spec gives no gateway (no key would be generated for it).
    new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway }));
    new AgentService(c, 'LlmGatewayClient', { ...minimalProps({ providers: undefined, gateway }), name: 'llm-gateway-client' } as AgentServiceProps);
    const message = (() => {
      try {
        synth(c);
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    })();
    expect(message).toContain(
      "AgentPlatform: the platform spec gives 'research-worker' the gateway 'llm-gateway', but LlmGateway 'llm-gateway' does not serve it: " +
        "connect it (gateway.connect(agent) or the agent's 'gateway' prop), or remove 'gateway' from 'research-worker' in platform.agents.",
    );
    expect(message).toContain("'llm-gateway-client' is not declared in the platform spec");
  });

  test('at synth: a gateway the spec does not declare', () => {
    const { c } = platformChart();
    const gateway = new LlmGateway(c, 'EdgeGateway', { providers: minimalProps().providers! });
    new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway }));
    expect(() => synth(c)).toThrow("AgentPlatform: LlmGateway 'edge-gateway': 'edge-gateway' is not declared in the platform spec 'acme-agents'");
  });

  test('at synth: a worker on an SQS queue the spec does not give it, or read by a role KEDA cannot assume', () => {
    const { c } = platformChart();
    new QueueWorker(c, 'ResearchWorker', {
      ...minimalProps(),
      queue: WorkerQueue.sqs({ queueUrl: 'https://sqs.us-east-1.amazonaws.com/111122223333/research', roleArn: 'arn:aws:iam::111122223333:role/acme-agents-research-worker' }),
      maxTaskDuration: Duration.minutes(5),
    });
    expect(() => synth(c)).toThrow(
      [
        "AgentPlatform: QueueWorker 'research-worker' consumes https://sqs.us-east-1.amazonaws.com/111122223333/research, but the platform spec's queue of 'research-worker' is " +
          "https://sqs.eu-central-1.amazonaws.com/111122223333/acme-agents-research-worker; use queue: platform.workerQueue('research-worker').",
        "AgentPlatform: QueueWorker 'research-worker''s queue is in region 'us-east-1' but the platform spec's 'aws.region' is 'eu-central-1' (region mismatch); use queue: platform.workerQueue('research-worker').",
        "AgentPlatform: QueueWorker 'research-worker': KEDA would assume arn:aws:iam::111122223333:role/acme-agents-research-worker to read the queue, but only the platform spec's KEDA role " +
          "arn:aws:iam::111122223333:role/acme-agents-keda trusts KEDA's ServiceAccount keda/keda-operator; set 'scalerRoleArn' to it, or use queue: platform.workerQueue('research-worker').",
      ].join('\n  [test/Platform] '),
    );
  });

  test('at synth: an SQS worker whose queue the spec does not declare', () => {
    const { c } = platformChart();
    new QueueWorker(c, 'SupportChat', {
      ...minimalProps(),
      queue: WorkerQueue.sqs({ queueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/acme-agents-support-chat' }),
      maxTaskDuration: Duration.minutes(5),
    });
    expect(() => synth(c)).toThrow(
      "AgentPlatform: QueueWorker 'support-chat' consumes an SQS queue but has no declared queue: add { worker: 'support-chat' } to platform.workerQueues and use queue: platform.workerQueue('support-chat').",
    );
  });

  test('at synth: a secret read through the SecretStore that the spec never declares, or a property it does not hold', () => {
    const { c, platform } = platformChart();
    new AgentService(c, 'SupportChat', {
      ...minimalProps({ providers: [LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('acme-agents/providers/mistral', 'api_key') })] }),
      secretStore: platform.secretStoreRef,
      secretEnv: { REDIS_USER: SecretKey.fromAwsSecretsManager('acme-agents/redis/connection', 'username') },
    });
    expect(() => synth(c)).toThrow(
      [
        "AgentPlatform: ExternalSecret 'support-chat-sidecar-secrets' reads the secret 'acme-agents/providers/mistral', which is referenced but never declared in the platform spec 'acme-agents' " +
          "(the store's role cannot read it): declare it (platform.providerKeys, or 'gateway' and 'approvals' on platform.agents) and use platform.providerKey(name), " +
          'platform.signingKeys(gateway) or platform.approverToken(agent), or fix the name ' +
          '(declared: acme-agents/providers/openai, acme-agents/providers/anthropic, acme-agents/redis/connection, acme-agents/gateways/llm-gateway/signing-keys, acme-agents/agents/support-chat/approver-token).',
        "AgentPlatform: ExternalSecret 'support-chat-agent-secrets' reads the property 'username' of 'acme-agents/redis/connection', which holds 'url' and 'auth_token'; fix the property.",
      ].join('\n  [test/Platform] '),
    );
  });
});

describe('AwsSecretStore errors', () => {
  test('a region that is not one', () => {
    expect(() => new AwsSecretStore(chart(), 'Store', { region: 'Frankfurt', awsRole: AwsRole.fromArn(ROLE) })).toThrow(
      "AwsSecretStore 'aws-secrets-manager': 'region' ('Frankfurt') must be an AWS region such as 'eu-central-1': the region the cloud side keeps the secrets in (the platform spec's 'aws.region').",
    );
  });

  test('a ServiceAccount name that is not a DNS label', () => {
    expect(() => new AwsSecretStore(chart(), 'Store', { region: 'eu-central-1', awsRole: AwsRole.fromArn(ROLE), serviceAccountName: 'ESO_Reader' })).toThrow(
      "AwsSecretStore 'aws-secrets-manager': 'serviceAccountName' ('ESO_Reader') must be a DNS label: lowercase letters, digits and '-', starting with a letter, at most 63 characters.",
    );
  });

  test('no role and no ServiceAccount', () => {
    expect(() => new AwsSecretStore(chart(), 'Store', { region: 'eu-central-1' })).toThrow(
      "AwsSecretStore 'aws-secrets-manager': 'awsRole' is required: the IAM role its ServiceAccount assumes to read Secrets Manager (AgentPlatform builds the store from the platform spec; or give an existing 'serviceAccount').",
    );
  });

  test('an existing ServiceAccount and a role', () => {
    const c = chart();
    const serviceAccount = ServiceAccount.fromServiceAccountName(c, 'Existing', 'eso');
    expect(() => new AwsSecretStore(c, 'Store', { region: 'eu-central-1', serviceAccount, awsRole: AwsRole.fromArn(ROLE) })).toThrow(
      "AwsSecretStore 'aws-secrets-manager': 'serviceAccount' is an existing ServiceAccount, already bound to its role, but 'awsRole' is set too. Remove it, or remove 'serviceAccount' to have the store create its own.",
    );
  });

  test('fromPlatform with an invalid spec', () => {
    expect(() => AwsSecretStore.fromPlatform(chart(), 'Store', { ...spec, providerKeys: [] })).toThrow(
      "AwsSecretStore.fromPlatform: 'spec' is invalid:\n  spec.agents[1].providerKeys[0]: the secret 'openai' is referenced but never declared",
    );
  });
});

describe('awsRole errors', () => {
  test('an ARN that is not a role ARN', () => {
    expect(() => AwsRole.fromArn('arn:aws:iam::1111:user/me')).toThrow(
      "AwsRole.fromArn: 'arn' ('arn:aws:iam::1111:user/me') must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME with the 12-digit account id; " +
        'derive it from the platform spec with AgentPlatform.roleOf(agent) rather than writing it by hand.',
    );
  });

  test('a bare string from JavaScript', () => {
    expect(() => new AgentService(chart(), 'SupportChat', minimalProps({ awsRole: ROLE as unknown as AwsRole }))).toThrow(
      `AgentService 'support-chat': 'awsRole' must be an AwsRole: AwsRole.fromArn('arn:aws:iam::ACCOUNT:role/NAME'), or AgentPlatform.roleOf(agent) to derive it from the platform spec (got "${ROLE}").`,
    );
    expect(() => new LlmGateway(chart(), 'LlmGateway', { providers: minimalProps().providers!, awsRole: ROLE as unknown as AwsRole })).toThrow(
      "LlmGateway 'llm-gateway': 'awsRole' must be an AwsRole",
    );
  });

  test("a worker's awsRole and its queue's roleArn differ", () => {
    expect(
      () =>
        new QueueWorker(chart(), 'ResearchWorker', {
          ...minimalProps(),
          awsRole: AwsRole.fromArn(ROLE),
          queue: WorkerQueue.sqs({ queueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/tasks', roleArn: 'arn:aws:iam::111122223333:role/worker' }),
          maxTaskDuration: Duration.minutes(5),
        }),
    ).toThrow(
      `QueueWorker 'research-worker': 'awsRole' (${ROLE}) and the queue's 'roleArn' (arn:aws:iam::111122223333:role/worker) differ, but the pods have one ServiceAccount and so one role. ` +
        'Remove one of them, or make them the same role.',
    );
  });
});
