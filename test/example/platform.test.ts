/**
 * The example platform as shipped: synthesized by the same entry file `npm run synth` runs,
 * every object checked against the Kubernetes 1.28 and CRD schemas, Pod Security "restricted"
 * and the rule pack (which the synth itself applies); then the gateway and the support agent's
 * sidecar are run from the YAML (their command, args, env, ConfigMaps and Secret mounts) on
 * loopback, and the official SDKs call agent -> sidecar -> gateway -> fake provider. Cluster
 * addresses are the only thing rewritten.
 */
import Anthropic from '@anthropic-ai/sdk';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { platform } from '../../examples/platform';
import { checkManifests, formatFinding, platformNames } from '../../lib';
import { FakeLlm } from '../support/fake-llm';
import { synthExample } from '../support/example';
import { checkReadOnlyRoot, checkRestricted, loadSynthesized, validateManifests } from '../support/k8s-validate';
import { adaptConfig, containerEnv, findObject, materializeContainer, type MaterializedContainer, type SecretValues } from '../support/pod-runner';
import { RedisServer } from '../support/redis';
import { rawPost, Sidecar, sleep, sumSamples } from '../support/sidecar';
import { ToolServer } from '../support/tool-server';

function filesOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

const first = mkdtempSync(path.join(tmpdir(), 'example-k8s-'));
const second = mkdtempSync(path.join(tmpdir(), 'example-k8s-'));
let objects: unknown[];

beforeAll(() => {
  synthExample(first);
  synthExample(second);
  objects = loadSynthesized(first);
}, 120_000);

describe('the synthesized example', () => {
  test('has the platform: gateway and agent with their ConfigMaps, policies and autoscaling', () => {
    const kinds = (objects as Array<{ kind: string; metadata: { name: string } }>).map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Deployment/llm-gateway',
        'Deployment/support-chat',
        'ConfigMap/support-chat-sidecar-config',
        'ConfigMap/support-chat-prompt',
        'ExternalSecret/llm-gateway-provider-keys',
        'NetworkPolicy/llm-gateway',
        'NetworkPolicy/support-chat',
        'PodDisruptionBudget/llm-gateway',
        'HorizontalPodAutoscaler/support-chat',
      ]),
    );
  });

  test('has the research worker: its Deployment scaled by KEDA on SQS, and its warm pool', () => {
    const kinds = (objects as Array<{ kind: string; metadata: { name: string } }>).map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Deployment/research-worker',
        'ScaledObject/research-worker',
        'TriggerAuthentication/research-worker',
        'Deployment/research-worker-warm-pool',
        'DaemonSet/research-worker-image-prepull',
        'NetworkPolicy/research-worker-warm-pool',
        'PriorityClass/cdk-agents-warm-pool',
      ]),
    );
    // KEDA owns the replica count: no HPA of the construct's own, no replicas in the Deployment.
    expect(kinds).not.toContain('HorizontalPodAutoscaler/research-worker');
    expect(findObject(objects, 'Deployment', 'research-worker').spec.replicas).toBeUndefined();
    const scaledObject = findObject(objects, 'ScaledObject', 'research-worker');
    expect(scaledObject.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'research-worker' });
    expect(scaledObject.spec.triggers[0].type).toBe('aws-sqs-queue');
    const account = findObject(objects, 'ServiceAccount', 'research-worker');
    expect(account.metadata.annotations['eks.amazonaws.com/role-arn']).toBe(platformNames(platform).agent('research-worker').roleArn);
  });

  test('every object is valid against Kubernetes 1.28 and the CRD schemas', () => {
    expect(validateManifests(objects)).toEqual([]);
  });

  test('every pod passes Pod Security Standards "restricted", with a read-only root filesystem', () => {
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('the rule pack (AGT-K8S-1...) finds nothing in the YAML alone, warnings included', () => {
    expect(checkManifests(objects).map(formatFinding)).toEqual([]);
  });

  test('the one private destination of the agent pods is declared on their policies: the VPC on the Redis port', () => {
    for (const name of ['llm-gateway', 'support-chat', 'research-worker']) {
      const policy = findObject(objects, 'NetworkPolicy', name);
      expect(policy.metadata.annotations['cdk-agents.io/private-egress']).toBe(`${platform.aws.vpcCidr} 6379 the Redis store of the sidecar (budgets, rate limits, approvals)`);
      const toVpc = policy.spec.egress.filter((r: any) => r.to.some((p: any) => p.ipBlock?.cidr === platform.aws.vpcCidr));
      expect(toVpc).toEqual([{ to: [{ ipBlock: { cidr: platform.aws.vpcCidr } }], ports: [{ port: 6379, protocol: 'TCP' }] }]);
    }
  });

  test('synth is deterministic: the same files, byte for byte, on every run', () => {
    const a = filesOf(first);
    expect(Object.keys(a).length).toBeGreaterThan(10);
    expect(filesOf(second)).toEqual(a);
  });

  test('the agent container holds no provider key and mounts no secret', () => {
    const pod = findObject(objects, 'Deployment', 'support-chat').spec.template.spec;
    const agent = pod.containers.find((c: { name: string }) => c.name === 'agent');
    const secretVolumes = new Set(pod.volumes.filter((v: { secret?: unknown }) => v.secret).map((v: { name: string }) => v.name));
    expect(agent.volumeMounts.filter((m: { name: string }) => secretVolumes.has(m.name))).toEqual([]);
    expect((agent.env ?? []).filter((e: { valueFrom?: unknown }) => e.valueFrom)).toEqual([]);
  });
});

describe('run as shipped: agent SDK -> sidecar -> gateway -> provider', () => {
  const keys = {
    openai: `sk-openai-${randomBytes(6).toString('hex')}`,
    anthropic: `sk-ant-${randomBytes(6).toString('hex')}`,
    signing: randomBytes(32).toString('base64url'),
    researchSigning: randomBytes(32).toString('base64url'),
    approver: randomBytes(16).toString('hex'),
    redis: randomBytes(12).toString('hex'),
  };
  // What External Secrets would write from Secrets Manager: the provider keys (put in out of band), and what
  // Terraform wrote: the Redis connection (its URL rewritten to the test's Redis below, like every cluster
  // address), the gateway's signing keys and the approver token it generated. No Secret is made by hand.
  const redisConnection = { 'redis-url': 'rediss://master.acme-agents-redis.abc123.euc1.cache.amazonaws.com:6379', 'redis-password': keys.redis };
  const secrets: SecretValues = {
    'llm-gateway-provider-keys': { 'openai-api-key': keys.openai, 'anthropic-api-key': keys.anthropic, ...redisConnection },
    'support-chat-sidecar-secrets': { ...redisConnection, 'approver-token': keys.approver },
    'research-worker-sidecar-secrets': redisConnection,
    'llm-gateway-signing-keys': { 'support-chat': keys.signing, 'research-worker': keys.researchSigning },
  };
  let redis: RedisServer;
  let oai: FakeLlm;
  let ant: FakeLlm;
  let tools: ToolServer;
  let gateway: Sidecar;
  let sidecar: Sidecar;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    [redis, oai, ant, tools] = await Promise.all([RedisServer.start({ password: keys.redis }), FakeLlm.start(), FakeLlm.start(), ToolServer.start()]);

    const gw = materializeContainer(objects, 'llm-gateway', 'llm-gateway', secrets);
    adaptConfig(gw, (c) => {
      c.listen = { host: '127.0.0.1', port: 0 };
      c.admin = { host: '127.0.0.1', port: 0 };
      c.store.url = redis.url;
      for (const p of c.providers) p.baseUrl = p.type === 'anthropic' ? ant.url : oai.openaiUrl;
      // Fast retries: the provider outage below should not cost the test seconds.
      c.retry = { ...c.retry, baseDelayMs: 10, maxDelayMs: 20 };
    });
    gateway = await Sidecar.start({ command: gw.command, args: gw.args, env: gw.env });

    const sc = materializeContainer(objects, 'support-chat', 'cdk-agents-sidecar', secrets);
    adaptConfig(sc, (c) => {
      c.listen = { host: '127.0.0.1', port: 0 };
      c.admin = { host: '127.0.0.1', port: 0 };
      c.store.url = redis.url;
      c.providers[0].baseUrl = gateway.url;
      for (const t of c.tools) t.endpoint = tools.url(new URL(t.endpoint).pathname);
    });
    sidecar = await Sidecar.start({ command: sc.command, args: sc.args, env: sc.env });

    // The agent's SDKs, configured from the agent container's env with the sidecar's loopback address.
    const agentEnv = containerEnv(objects, 'support-chat', 'agent');
    const local = (url: string) => url.replace('http://127.0.0.1:8787', sidecar.url);
    openai = new OpenAI({ baseURL: local(agentEnv.OPENAI_BASE_URL), apiKey: agentEnv.OPENAI_API_KEY, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: local(agentEnv.ANTHROPIC_BASE_URL), apiKey: agentEnv.ANTHROPIC_API_KEY, maxRetries: 0 });
  }, 60_000);

  afterAll(async () => {
    await Promise.all([sidecar?.stop(), gateway?.stop()]);
    await Promise.all([redis?.stop(), oai?.close(), ant?.close(), tools?.close()]);
  });

  beforeEach(() => {
    oai.reset();
    ant.reset();
  });

  test('the sidecar runs the bundle from its ConfigMap, not the build output', () => {
    const sc = materializeContainer(objects, 'support-chat', 'cdk-agents-sidecar', secrets);
    expect(sc.command.some((a) => a === sc.hostPath('/opt/cdk-agents/sidecar.js'))).toBe(true);
  });

  test('OpenAI SDK: answered by OpenAI with the key only the gateway holds, metered on both hops', async () => {
    oai.script({ text: 'Your order AC-123456 ships tomorrow.' });
    const completion = await openai.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Where is my order?' }] },
      { headers: { 'x-agent-user': 'customer-42', 'x-agent-run-id': 'run-1' } },
    );
    expect(completion.choices[0].message.content).toBe('Your order AC-123456 ships tomorrow.');
    const sent = oai.requests[0];
    expect(sent.headers.authorization).toBe(`Bearer ${keys.openai}`);
    expect(JSON.stringify(sent.headers)).not.toContain('unused-the-cdk-agents-sidecar-holds-the-key');
    expect(Object.keys(sent.headers).filter((h) => h.startsWith('x-cdk-agents-') || h.startsWith('x-agent-'))).toEqual([]);

    expect(await sidecar.metric('llm_requests_total', { agent: 'support-chat', provider: 'llm-gateway', code: '200' })).toBe(1);
    // The gateway counts it for the agent whose signature it verified.
    expect(sumSamples(await gateway.metricsText(), 'llm_requests_total', { agent: 'support-chat', provider: 'openai', code: '200' })).toBe(1);
    // The budgets declared on the agent are kept in the shared Redis.
    expect(redis.cli('--scan', '--pattern', 'cdka:*').split('\n').filter(Boolean).length).toBeGreaterThan(0);
  });

  test('Anthropic SDK, streamed: answered by Anthropic with its key', async () => {
    ant.script({ text: 'Streaming through both hops.' });
    const stream = anthropic.messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 100, messages: [{ role: 'user', content: 'Hi' }] });
    const final = await stream.finalMessage();
    expect(final.content[0]).toMatchObject({ type: 'text', text: 'Streaming through both hops.' });
    expect(ant.requests[0].headers['x-api-key']).toBe(keys.anthropic);
  });

  test('OpenAI down: the gateway serves the OpenAI request from Anthropic, translated', async () => {
    oai.defaultStep = { status: 503 };
    try {
      ant.script({ text: 'Answered by the fallback.' });
      const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Still there?' }] });
      expect(completion.choices[0].message.content).toBe('Answered by the fallback.');
      expect(completion.model).toBe('gpt-4o-mini');
      expect(ant.requests[0].body.model).toBe('claude-sonnet-4-6');
    } finally {
      oai.defaultStep = {};
    }
  });

  test('the gateway refuses a request that did not come through a sidecar, even one claiming the agent', async () => {
    const res = await rawPost(`${gateway.url}/v1/chat/completions`, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }), {
      'content-type': 'application/json',
      'x-cdk-agents-agent': 'support-chat',
    });
    expect(res.status).toBe(401);
    expect(oai.requests).toHaveLength(0);
  });

  test('tools: lookup_order goes straight to its endpoint; issue_refund waits for an approver', async () => {
    const lookup = await rawPost(`${sidecar.url}/tools/lookup_order`, JSON.stringify({ order_id: 'AC-123456' }), { 'content-type': 'application/json' });
    expect(lookup.status).toBe(200);
    expect(tools.callsTo('/v1/orders/lookup')).toHaveLength(1);

    const refund = await rawPost(`${sidecar.url}/tools/issue_refund`, JSON.stringify({ order_id: 'AC-123456', amount_eur: 20, reason: 'damaged' }), {
      'content-type': 'application/json',
    });
    expect(refund.status).toBe(202);
    expect(tools.callsTo('/v1/refunds')).toHaveLength(0);
    const pending = await fetch(`${sidecar.adminUrl}/approvals?status=pending`, { headers: { authorization: `Bearer ${keys.approver}` } });
    expect(pending.status).toBe(200);
    expect(JSON.stringify(await pending.json())).toContain('issue_refund');
  });

  describe('the research worker, scaled in mid-task', () => {
    let worker: Sidecar;
    let sc: MaterializedContainer;
    let agentEnv: Record<string, string>;
    let workerOpenai: OpenAI;

    beforeAll(async () => {
      sc = materializeContainer(objects, 'research-worker', 'cdk-agents-sidecar', secrets);
      adaptConfig(sc, (c) => {
        c.listen = { host: '127.0.0.1', port: 0 };
        c.admin = { host: '127.0.0.1', port: 0 };
        c.store.url = redis.url;
        c.providers[0].baseUrl = gateway.url;
      });
      worker = await Sidecar.start({ command: sc.command, args: sc.args, env: sc.env });
      agentEnv = containerEnv(objects, 'research-worker', 'agent');
      workerOpenai = new OpenAI({ baseURL: agentEnv.OPENAI_BASE_URL.replace('http://127.0.0.1:8787', worker.url), apiKey: agentEnv.OPENAI_API_KEY, maxRetries: 0 });
    }, 30_000);

    afterAll(async () => {
      await worker?.stop();
    });

    test("the sidecar's preStop keeps it serving the agent's last task until the agent writes its done file; then SIGTERM drains it", async () => {
      const doneFile = agentEnv.AGENT_WORKER_DONE_FILE;
      const [program, ...rest] = sc.spec.lifecycle.preStop.exec.command as string[];
      expect(program).toBe('node');
      // The pod is being deleted (scale-in): the kubelet runs the sidecar's preStop hook.
      const hook = spawn(process.execPath, rest.map((a) => a.replace(doneFile, sc.hostPath(doneFile))), { stdio: 'ignore' });
      const hookExit = new Promise<number | null>((resolve) => hook.once('exit', (code) => resolve(code)));

      // Meanwhile the agent finishes its task: its LLM calls still go through, signed for the gateway.
      oai.script({ text: 'Two of the three suppliers delivered late in May.' });
      const completion = await workerOpenai.chat.completions.create(
        { model: agentEnv.AGENT_MODEL, messages: [{ role: 'user', content: 'Check the delivery record of our suppliers.' }] },
        { headers: { 'x-agent-user': 'customer-42', 'x-agent-run-id': 'task-1' } },
      );
      expect(completion.choices[0].message.content).toBe('Two of the three suppliers delivered late in May.');
      expect(sumSamples(await gateway.metricsText(), 'llm_requests_total', { agent: 'research-worker', provider: 'openai', code: '200' })).toBe(1);
      await sleep(1_200);
      expect(hook.exitCode).toBeNull();

      // The agent exits and says so; the hook returns, and the kubelet's SIGTERM drains the sidecar.
      writeFileSync(sc.hostPath(doneFile), '');
      expect(await hookExit).toBe(0);
      expect(await worker.stop()).toEqual({ code: 0, signal: null });
    });
  });
});
