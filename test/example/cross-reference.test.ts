/**
 * Both sides of the example from the one spec: examples/k8s.ts synthesized as `npm run synth`
 * runs it, examples/cloud.ts's stack synthesized by cdktf, and every reference from the YAML into
 * the Terraform checked on the output alone (crossReferenceProblems of cdk-agents/cloud): IRSA roles and
 * their trust, secrets and their properties, the SecretStore's region and rights, KEDA's queue.
 * Then a name changed on one side, which the check catches, and the synth-time errors that stop
 * such a change before it is written.
 */
import { Testing } from 'cdktf';
import { platformStack } from '../../examples/cloud';
import { platform } from '../../examples/platform';
import {
  AgentPlatform,
  AgentService,
  AwsRole,
  AwsSecretStore,
  IRSA_ROLE_ANNOTATION,
  LlmProvider,
  SecretKey,
  platformNames,
  type PlatformSpec,
} from '../../lib';
import { AgentCloud, crossReferenceProblems, type TerraformJson } from '../../lib/cloud';
import { awsStack, validProps } from '../cloud/helpers';
import { chart, minimalProps, synth } from '../k8s/helpers';
import { exampleObjects } from '../support/example';

type Json = Record<string, any>;

const names = platformNames(platform);
const kedaOperator = { namespace: names.keda.namespace, serviceAccount: names.keda.serviceAccount };
const problems = (objects: Json[], tf: TerraformJson) => crossReferenceProblems(objects, tf, { kedaOperator });

/** The cloud side of `spec` as Terraform JSON, validations run (examples/cloud.ts for the example spec). */
function cloudSide(spec: PlatformSpec = platform): TerraformJson {
  if (spec === platform) return JSON.parse(Testing.synth(platformStack(Testing.app()), true));
  const stack = awsStack(spec.aws.region);
  new AgentCloud(stack, 'AgentCloud', validProps({ spec }));
  return JSON.parse(Testing.synth(stack, true));
}

/** A deep copy of `value`, changed by `change`. */
function changed<T>(value: T, change: (copy: T) => void): T {
  const copy = structuredClone(value);
  change(copy);
  return copy;
}

let objects: Json[];
let tf: TerraformJson;

beforeAll(() => {
  objects = exampleObjects() as Json[];
  tf = cloudSide();
}, 120_000);

const of = (kind: string, name: string) => (o: Json[]) => o.find((x) => x.kind === kind && x.metadata.name === name)!;
const roleTf = (t: TerraformJson, name: string) => Object.values(t.resource.aws_iam_role).find((r) => r.name === name)!;

describe('the example, both sides', () => {
  test('every reference from the Kubernetes side into the Terraform matches', () => {
    expect(problems(objects, tf)).toEqual([]);
  });

  test('what the check walked: four IRSA ServiceAccounts, the SecretStore, three ExternalSecrets, the SQS trigger and KEDA role', () => {
    const irsa = objects.filter((o) => o.kind === 'ServiceAccount' && o.metadata.annotations?.[IRSA_ROLE_ANNOTATION]);
    expect(irsa.map((a) => `${a.metadata.name} -> ${a.metadata.annotations[IRSA_ROLE_ANNOTATION]}`).sort()).toEqual(
      [
        `aws-secrets-manager -> ${names.secretStore.roleArn}`,
        `llm-gateway -> ${names.agent('llm-gateway').roleArn}`,
        `research-worker -> ${names.agent('research-worker').roleArn}`,
        `support-chat -> ${names.agent('support-chat').roleArn}`,
      ].sort(),
    );
    const reads = objects
      .filter((o) => o.kind === 'ExternalSecret')
      .flatMap((s) => s.spec.data.map((d: Json) => `${d.remoteRef.key}#${d.remoteRef.property}`));
    expect(new Set(reads)).toEqual(
      new Set(['acme-agents/providers/openai#api_key', 'acme-agents/providers/anthropic#api_key', 'acme-agents/redis/connection#url', 'acme-agents/redis/connection#auth_token']),
    );
    expect(of('SecretStore', 'aws-secrets-manager')(objects).spec.provider.aws.region).toBe(tf.provider!.aws[0].region);
    expect(of('ScaledObject', 'research-worker')(objects).spec.triggers[0].metadata.queueURL).toBe(
      `https://sqs.eu-central-1.amazonaws.com/111122223333/${Object.values(tf.resource.aws_sqs_queue).find((q) => !q.name.endsWith('-dlq'))!.name}`,
    );
    expect(of('TriggerAuthentication', 'research-worker')(objects).spec.podIdentity.roleArn).toBe(`arn:aws:iam::111122223333:role/${roleTf(tf, 'acme-agents-keda').name}`);
  });
});

describe('a name changed on one side is caught', () => {
  test('a ServiceAccount annotated with a role Terraform does not create', () => {
    const k8s = changed(objects, (o) => {
      of('ServiceAccount', 'support-chat')(o).metadata.annotations[IRSA_ROLE_ANNOTATION] = 'arn:aws:iam::111122223333:role/acme-agents-support';
    });
    expect(problems(k8s, tf)).toEqual([
      expect.stringMatching(/^ServiceAccount agents\/support-chat: the role arn:aws:iam::111122223333:role\/acme-agents-support names no aws_iam_role in the Terraform \(roles: /),
    ]);
  });

  test('a role in another account', () => {
    const k8s = changed(objects, (o) => {
      of('ServiceAccount', 'llm-gateway')(o).metadata.annotations[IRSA_ROLE_ANNOTATION] = 'arn:aws:iam::123456789012:role/acme-agents-llm-gateway';
    });
    expect(problems(k8s, tf)).toEqual([
      'ServiceAccount agents/llm-gateway: the role arn:aws:iam::123456789012:role/acme-agents-llm-gateway is in account 123456789012, but the AWS provider allows 111122223333',
    ]);
  });

  test('a role trusting another ServiceAccount, or another audience', () => {
    const cloud = changed(tf, (t) => {
      const role = roleTf(t, 'acme-agents-research-worker');
      role.assume_role_policy = role.assume_role_policy.replace('system:serviceaccount:agents:research-worker', 'system:serviceaccount:agents:research');
      const gateway = roleTf(t, 'acme-agents-llm-gateway');
      gateway.assume_role_policy = gateway.assume_role_policy.replace('sts.amazonaws.com', 'sts.example.com');
    });
    expect(problems(objects, cloud)).toEqual([
      'ServiceAccount agents/llm-gateway: the role acme-agents-llm-gateway does not trust system:serviceaccount:agents:llm-gateway with audience sts.amazonaws.com (it trusts ["system:serviceaccount:agents:llm-gateway"])',
      'ServiceAccount agents/research-worker: the role acme-agents-research-worker does not trust system:serviceaccount:agents:research-worker with audience sts.amazonaws.com (it trusts ["system:serviceaccount:agents:research"])',
    ]);
  });

  test('an ExternalSecret reading a secret Terraform never declares, or a property the secret does not hold', () => {
    const k8s = changed(objects, (o) => {
      const data = of('ExternalSecret', 'llm-gateway-provider-keys')(o).spec.data as Json[];
      data.find((d) => d.remoteRef.key === 'acme-agents/providers/openai')!.remoteRef.key = 'prod/llm/openai';
      data.find((d) => d.remoteRef.property === 'auth_token')!.remoteRef.property = 'password';
    });
    expect(problems(k8s, tf)).toEqual([
      'SecretStore agents/aws-secrets-manager: its role acme-agents-secret-store cannot read the secret prod/llm/openai that ExternalSecrets read through it',
      'SecretStore agents/aws-secrets-manager: its role acme-agents-secret-store reads the secret acme-agents/providers/openai, which no ExternalSecret reads through it (least privilege)',
      'ExternalSecret agents/llm-gateway-provider-keys: reads the property password of acme-agents/redis/connection, which holds url, auth_token',
      expect.stringMatching(/^ExternalSecret agents\/llm-gateway-provider-keys: reads the secret prod\/llm\/openai, which names no aws_secretsmanager_secret in the Terraform/),
    ]);
  });

  test("the SecretStore's role without a secret the ExternalSecrets read, or with one they do not", () => {
    const cloud = changed(tf, (t) => {
      const policy = Object.values(t.resource.aws_iam_role_policy).find((p) => p.policy.includes('ReadPlatformSecrets'))!;
      policy.policy = policy.policy.replace(/"\$\{aws_secretsmanager_secret\.AgentCloud_AnthropicKey_[A-F0-9]+\.arn\}",?/, '');
    });
    expect(problems(objects, cloud)).toEqual([
      'SecretStore agents/aws-secrets-manager: its role acme-agents-secret-store cannot read the secret acme-agents/providers/anthropic that ExternalSecrets read through it',
    ]);
    const k8s = changed(objects, (o) => {
      const data = of('ExternalSecret', 'llm-gateway-provider-keys')(o).spec.data as Json[];
      data.splice(data.findIndex((d) => d.remoteRef.key === 'acme-agents/providers/anthropic'), 1);
    });
    expect(problems(k8s, tf)).toEqual([
      'SecretStore agents/aws-secrets-manager: its role acme-agents-secret-store reads the secret acme-agents/providers/anthropic, which no ExternalSecret reads through it (least privilege)',
    ]);
  });

  test('a region mismatch: the cloud side applied to another region', () => {
    const cloud = changed(tf, (t) => {
      t.provider!.aws[0].region = 'us-east-1';
    });
    expect(problems(objects, cloud)).toEqual([
      'SecretStore agents/aws-secrets-manager: reads region eu-central-1, but the Terraform\'s AWS provider puts the secrets in us-east-1',
      'ScaledObject agents/research-worker: the queue https://sqs.eu-central-1.amazonaws.com/111122223333/acme-agents-research-worker (awsRegion eu-central-1) is not in the Terraform\'s region us-east-1',
    ]);
  });

  test('the queue renamed on the cloud side', () => {
    const cloud = changed(tf, (t) => {
      Object.values(t.resource.aws_sqs_queue).find((q) => q.name === 'acme-agents-research-worker')!.name = 'acme-agents-research';
    });
    expect(problems(objects, cloud)).toEqual([
      expect.stringMatching(/^ScaledObject agents\/research-worker: the queue https:\/\/sqs\.eu-central-1\.amazonaws\.com\/111122223333\/acme-agents-research-worker names no aws_sqs_queue in the Terraform/),
    ]);
  });

  test("KEDA's role trusting another operator, and the worker's role not allowed to receive", () => {
    expect(crossReferenceProblems(objects, tf, { kedaOperator: { namespace: 'keda-system', serviceAccount: 'keda-operator' } })).toEqual([
      'TriggerAuthentication agents/research-worker: the role acme-agents-keda does not trust system:serviceaccount:keda-system:keda-operator with audience sts.amazonaws.com (it trusts ["system:serviceaccount:keda:keda-operator"])',
    ]);
    const cloud = changed(tf, (t) => {
      const policy = Object.values(t.resource.aws_iam_role_policy).find((p) => p.policy.includes('ConsumeResearchWorkerQueue'))!;
      policy.policy = policy.policy.replace('"sqs:ReceiveMessage",', '');
    });
    expect(problems(objects, cloud)).toEqual(["ScaledObject agents/research-worker: the worker's role acme-agents-research-worker may not receive from acme-agents-research-worker"]);
  });

  test('the spec renamed for one side only: every shared name differs, and the check lists each', () => {
    const cloud = cloudSide({ ...platform, name: 'acme-agents-v2' });
    const found = problems(objects, cloud);
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^ServiceAccount agents\/support-chat: the role .*acme-agents-support-chat names no aws_iam_role/),
        expect.stringMatching(/^ServiceAccount agents\/aws-secrets-manager: the role .*acme-agents-secret-store names no aws_iam_role/),
        expect.stringMatching(/^ExternalSecret agents\/llm-gateway-provider-keys: reads the secret acme-agents\/providers\/openai, which names no aws_secretsmanager_secret/),
        expect.stringMatching(/^ScaledObject agents\/research-worker: the queue .*acme-agents-research-worker names no aws_sqs_queue/),
      ]),
    );
  });
});

describe('synth-time errors stop a mismatch before it is written', () => {
  test('a region mismatch: a SecretStore in another region than aws.region names both', () => {
    const c = chart(platform.kubernetes.namespace);
    const secretStore = new AwsSecretStore(c, 'Store', { region: 'eu-west-1', awsRole: AwsRole.fromArn(names.secretStore.roleArn) });
    expect(() => new AgentPlatform(c, 'Platform', { spec: platform, secretStore })).toThrow(
      /'secretStore': AwsSecretStore 'aws-secrets-manager' reads region 'eu-west-1' but the platform spec's 'aws.region' is 'eu-central-1' \(region mismatch\).*Set its 'region' to 'eu-central-1'/,
    );
  });

  test("a region mismatch on the cloud side: the AwsProvider's region names aws.region", () => {
    const stack = awsStack('us-east-1');
    new AgentCloud(stack, 'AgentCloud', validProps());
    expect(() => Testing.synth(stack, true)).toThrow(/has region 'us-east-1' but the spec's 'aws\.region' is 'eu-central-1'/);
  });

  test('a cluster in another region than the spec: the spec names the field', () => {
    const spec = { ...platform, aws: { ...platform.aws, region: 'eu-west-1' } };
    expect(() => new AgentPlatform(chart(platform.kubernetes.namespace), 'Platform', { spec })).toThrow(
      "spec.kubernetes.cluster.oidcIssuerUrl: the cluster is in eu-central-1 but 'aws.region' is eu-west-1: the cloud and Kubernetes sides must be in one region; fix 'aws.region' or the issuer URL",
    );
  });

  test('a secret referenced but never declared: at construction, and at synth for a literal one', () => {
    const c = chart(platform.kubernetes.namespace);
    const k8s = new AgentPlatform(c, 'Platform', { spec: platform });
    expect(() => k8s.providerKey('mistral')).toThrow("the secret 'mistral' is referenced but never declared: add { name: 'mistral' } to platform.providerKeys");
    new AgentService(c, 'SupportChat', {
      ...minimalProps({ providers: [LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('acme-agents/providers/mistral', 'api_key') })] }),
      secretStore: k8s.secretStoreRef,
    });
    expect(() => synth(c)).toThrow("reads the secret 'acme-agents/providers/mistral', which is referenced but never declared in the platform spec 'acme-agents'");
  });
});
