/**
 * AgentService validation: every mistake fails at construction (or, for what a later call can
 * still fix, at synth) with a message naming the prop and the fix.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Duration } from 'cdk8s';
import { Cpu } from 'cdk8s-plus-28';
import {
  AgentImage,
  AgentService,
  AgentTool,
  Budget,
  BudgetStore,
  LlmGateway,
  LlmProvider,
  RateLimit,
  SecretKey,
  SidecarDelivery,
  SystemPrompt,
  type AgentServiceProps,
} from '../../lib';
import { agent, chart, minimalProps, synth } from './helpers';

const tool = (name: string, endpoint = 'https://tools.example.com/x', requiresApproval = false) =>
  AgentTool.http({ name, description: 'A tool.', parameters: { type: 'object' }, endpoint, requiresApproval });

describe('AgentService errors', () => {
  describe('image', () => {
    test.each([
      ['ghcr.io/acme/support', /has no tag/],
      ['ghcr.io/acme/support:latest', /uses 'latest'/],
      ['ghcr.io/acme/support:main', /floating tag 'main'/],
      ['ghcr.io/acme/support:20', /floating tag '20'/],
      ['localhost:5000/support', /has no tag/],
      ['ghcr.io/acme/support@sha256:abc', /malformed digest/],
    ])('%s is refused', (ref, reason) => {
      expect(() => AgentImage.fromRegistry(ref)).toThrow(reason);
      expect(() => AgentImage.fromRegistry(ref)).toThrow(/^'image' .*: pin a version tag \(.*:1\.4\.2\) or a digest/);
    });

    test.each([
      'ghcr.io/acme/support:1.4.2',
      'ghcr.io/acme/support:v2.0.0-rc.1',
      'localhost:5000/support:1.4',
      'docker.io/library/node:20.20.2-bookworm-slim',
      'ghcr.io/acme/support:sha-1a2b3c4',
      `ghcr.io/acme/support@sha256:${'a'.repeat(64)}`,
      `ghcr.io/acme/support:main@sha256:${'a'.repeat(64)}`,
    ])('%s is pinned', (ref) => {
      expect(() => AgentImage.fromRegistry(ref)).not.toThrow();
    });
  });

  test('maxReplicas below minReplicas names both', () => {
    expect(() => agent(chart(), 'A', { autoscaling: { minReplicas: 3, maxReplicas: 2 } })).toThrow(
      "'autoscaling.maxReplicas' (2) must be >= 'autoscaling.minReplicas' (3). Raise maxReplicas or lower minReplicas.",
    );
  });

  test('replicas and autoscaling together', () => {
    expect(() => agent(chart(), 'A', { replicas: 3, autoscaling: { minReplicas: 2, maxReplicas: 4 } })).toThrow(/'replicas' and 'autoscaling' are both set/);
  });

  test('colliding tool names name both tools', () => {
    expect(() => agent(chart(), 'A', { tools: [tool('lookup', 'https://a.example.com/1'), tool('lookup', 'https://b.example.com/2')] })).toThrow(
      "two tools are named 'lookup' (endpoints https://a.example.com/1 and https://b.example.com/2)",
    );
    const a = agent(chart(), 'B', { tools: [tool('lookup')] });
    expect(() => a.addTool(tool('lookup'))).toThrow(/two tools are named 'lookup'/);
  });

  test('a tool requiring approval without an approver token', () => {
    expect(() => agent(chart(), 'A', { tools: [tool('refund', undefined, true)] })).toThrow(
      /tool 'refund' requires approval, so 'approvals' must be set: ApproverToken\.fromSecret/,
    );
  });

  test('a tool the runtime would refuse fails when declared', () => {
    expect(() => tool('has space')).toThrow(/AgentTool 'has space': 'name' must be 1-64 of letters/);
    expect(() => AgentTool.http({ name: 'x', description: 'd', parameters: { type: 'string' }, endpoint: 'https://x.example.com' })).toThrow(
      /'parameters' must be a JSON Schema object/,
    );
  });

  test('a missing prompt file names the path', () => {
    const missing = path.join(os.tmpdir(), 'cdk-agents-no-such-prompt.md');
    expect(() => SystemPrompt.fromFile(missing)).toThrow(`'systemPrompt': cannot read the prompt file ${missing} (ENOENT)`);
  });

  test('neither gateway nor providers fails at synth (gateway.connect may still come)', () => {
    const c = chart();
    agent(c, 'A', { providers: undefined });
    expect(() => synth(c)).toThrow(/AgentService 'a': set 'gateway' \(or call gateway.connect\(agent\)\) or 'providers'/);
  });

  test('both gateway and providers', () => {
    const c = chart();
    const gw = new LlmGateway(c, 'Gw', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('k', 'openai') })] });
    expect(() => agent(c, 'A', { gateway: gw })).toThrow(/'gateway' and 'providers' are both set/);
    const direct = agent(c, 'B');
    expect(() => gw.connect(direct)).toThrow(/'gateway' \(gw\) and 'providers' are both set/);
    const viaGateway = agent(c, 'C', { providers: undefined, gateway: gw });
    expect(() => viaGateway.addProvider(LlmProvider.openai({ apiKey: SecretKey.fromSecret('k', 'openai') }))).toThrow(/through gateway 'gw'/);
  });

  describe('budgets shared by replicas', () => {
    test('a per-agent budget on 2 replicas without Redis', () => {
      expect(() => agent(chart(), 'A', { budgets: [Budget.usdPerDay(50)] })).toThrow(
        /the budget 50 usd per day \(agent\) is shared by every pod, but with 2 replicas and the memory store each pod keeps its own count, so the real cap is 2x\. Set 'store: BudgetStore\.redis/,
      );
    });

    test('a per-user rate limit with autoscaling names the maximum', () => {
      expect(() => agent(chart(), 'A', { autoscaling: { minReplicas: 2, maxReplicas: 6 }, rateLimits: [RateLimit.requestsPerMinute(20).forUser()] })).toThrow(
        /up to 6 replicas .* real cap is 6x/,
      );
    });

    test('added later, too', () => {
      const a = agent(chart(), 'A');
      expect(() => a.addBudget(Budget.usdPerMonth(5).forUser())).toThrow(/acceptPerReplicaBudgets: true/);
    });

    test.each([
      ['Redis', { store: BudgetStore.redis({ url: 'redis://redis:6379' }) }],
      ['acceptPerReplicaBudgets', { acceptPerReplicaBudgets: true }],
      ['one replica', { replicas: 1 }],
    ])('fine with %s', (_, props) => {
      expect(() => agent(chart(), 'A', { ...props, budgets: [Budget.usdPerDay(50)] })).not.toThrow();
    });

    test('a Redis store needs exactly one of url and urlSecret', () => {
      expect(() => BudgetStore.redis({})).toThrow(/exactly one of 'url' and 'urlSecret'/);
      expect(() => BudgetStore.redis({ url: 'redis://user:pw@redis:6379' })).toThrow(/without credentials/);
    });

    test('run budgets are never shared', () => {
      expect(() => agent(chart(), 'A', { budgets: [Budget.usdPerDay(2).forRun()] })).not.toThrow();
    });

    test('a team budget needs the team', () => {
      expect(() => agent(chart(), 'A', { replicas: 1, budgets: [Budget.usdPerDay(2).forTeam()] })).toThrow(/kept for the team, so 'team' must be set/);
    });
  });

  describe('sidecar bundle', () => {
    test('missing: says how to build it', () => {
      expect(() => agent(chart(), 'A', { sidecar: SidecarDelivery.configMap({ bundlePath: '/nonexistent/sidecar.js' }) })).toThrow(
        /AgentService 'a': the sidecar bundle is missing \(looked for \/nonexistent\/sidecar\.js\): run 'npm run build', or deliver the runtime as an image/,
      );
    });

    test('too large for a ConfigMap: says to use an image', () => {
      const big = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-agents-')), 'sidecar.js');
      fs.writeFileSync(big, `// ${'x'.repeat(950 * 1024)}\n`);
      expect(() => agent(chart(), 'A', { sidecar: SidecarDelivery.configMap({ bundlePath: big }) })).toThrow(
        /the sidecar bundle ConfigMap would be 9\d\d KiB .* over the 900 KiB budget under Kubernetes' 1 MiB object limit\. Deliver the runtime as an image instead/,
      );
    });

    test('an unpinned runtime image', () => {
      expect(() => SidecarDelivery.image('registry.example.com/cdk-agents-sidecar:latest')).toThrow(/'SidecarDelivery.image'.*uses 'latest'/);
    });
  });

  test('an AWS secret without a secret store', () => {
    expect(() => agent(chart(), 'A', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('prod/openai') })] })).toThrow(
      /'providers \(openai\)\.apiKey' comes from AWS Secrets Manager \(prod\/openai\): set 'secretStore'/,
    );
  });

  test('a config override the runtime would refuse names the override', () => {
    const a = agent(chart(), 'A');
    expect(() => a.addConfigOverride('timeouts.firstByteMs', 900_000)).toThrow(
      /the runtime would refuse this config:\n {2}addConfigOverride\('timeouts.firstByteMs'\) \(900000\) must be <= totalMs/,
    );
    expect(() => a.addConfigOverride('timeoutz', {})).toThrow(/addConfigOverride\('timeoutz'\) unknown field/);
  });

  test('runtime config problems name the prop they came from', () => {
    expect(() => agent(chart(), 'A', { providers: [LlmProvider.azureOpenAi({ endpoint: 'https://acme.openai.azure.com', apiKey: SecretKey.fromSecret('k', 'azure'), deployments: { 'gpt-4o': 'prod' } })] })).toThrow(
      /'providers' \(azure-openai\): apiVersion is required with deployments/,
    );
  });

  test.each([
    ["the sidecar's port", { port: 8787 }, /'port' \(8787\) is the sidecar's/],
    ['a port out of range', { port: 70000 }, /'port' \(70000\) must be a port number/],
    ['healthPath without port', { healthPath: '/healthz' }, /'healthPath' needs 'port'/],
    ['wiring env', { env: { OPENAI_BASE_URL: 'http://elsewhere' } }, /env 'OPENAI_BASE_URL' is set by the construct/],
    ['an env set twice', { env: { X: '1' }, secretEnv: { X: SecretKey.fromSecret('s', 'x') } }, /env 'X' is set twice/],
    ['a grace period within the drain', { drainTimeout: Duration.seconds(30), terminationGracePeriod: Duration.seconds(30) }, /'terminationGracePeriod' \(30s\) must exceed 'drainTimeout' \(30s\)/],
    ['a name that is no DNS label', { name: 'Support_Chat' }, /'name' \('Support_Chat'\) must be a DNS label/],
    ['zero replicas', { replicas: 0 }, /'replicas' \(0\) must be a whole number >= 1/],
    ['a request above its limit', { resources: { cpu: { request: Cpu.units(2) } } }, /'resources': the cpu request \(2\) is above its limit \(1\)/],
  ] as [string, Partial<AgentServiceProps>, RegExp][])('%s is refused', (_, props, message) => {
    expect(() => agent(chart(), 'A', props)).toThrow(message);
  });

  test('allowFrom without a port', () => {
    const c = chart();
    const a = agent(c, 'A');
    expect(() => a.allowFrom(agent(c, 'B'))).toThrow(/allowFrom\(\) needs 'port'/);
  });

  test('a construct id that gives no DNS label', () => {
    expect(() => new AgentService(chart(), '42', minimalProps())).toThrow(/derived from the construct id '42'.*Set 'name' explicitly/);
  });
});
