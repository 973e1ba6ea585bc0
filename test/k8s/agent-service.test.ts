/**
 * AgentService output: the whole chart as a snapshot, and targeted assertions on what matters:
 * restricted pods with read-only roots, no provider key in the agent container, the sidecar's
 * command, mounts and probes, the validated config, the NetworkPolicy, scaling objects, the
 * checksum that rolls pods, and addX() after construction reaching the output.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiObject, Duration, JsonPatch, Size, Yaml } from 'cdk8s';
import { NetworkPolicyIpBlock, Pods } from 'cdk8s-plus-28';
import {
  AgentImage,
  AgentService,
  AgentTool,
  ApproverToken,
  Budget,
  BudgetStore,
  CHECKSUM_ANNOTATION,
  Guardrails,
  LlmProvider,
  LoopGuard,
  NODE_IMAGE,
  PLACEHOLDER_API_KEY,
  RateLimit,
  SIDECAR_NODE_FLAGS,
  SecretKey,
  SecretStoreRef,
  SidecarDelivery,
  SystemPrompt,
  parseSidecarConfig,
} from '../../lib';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { FIXTURE_BUNDLE, agent, bareChart, chart, container, env, find, findAll, ingressPods, minimalProps, sidecarJson, synth, volume, type Json } from './helpers';

const lookupOrder = () =>
  AgentTool.http({
    name: 'lookup_order',
    description: 'Look up an order by its number.',
    parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] },
    endpoint: 'http://orders.shop.svc.cluster.local/lookup',
    targetPort: 8080,
  });
const issueRefund = () =>
  AgentTool.http({
    name: 'issue_refund',
    description: 'Refund an order.',
    parameters: { type: 'object', properties: { order_id: { type: 'string' } } },
    endpoint: 'https://payments.example.com/refunds',
    requiresApproval: true,
  });

/** A fully featured agent: direct providers, tools with approval, budgets on Redis, callers. */
function fullAgent() {
  const c = chart();
  const a = new AgentService(c, 'SupportChat', {
    image: AgentImage.fromRegistry('ghcr.io/acme/support:1.4.2'),
    systemPrompt: SystemPrompt.fromText('You help customers with their orders.'),
    model: 'gpt-4o-mini',
    team: 'customer-care',
    providers: [
      LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') }),
      LlmProvider.anthropic({ apiKey: SecretKey.fromSecret('llm-keys', 'anthropic'), fallbackModel: 'claude-sonnet-4-6' }),
    ],
    tools: [lookupOrder(), issueRefund()],
    approvals: ApproverToken.fromSecret('support-approvers', 'token'),
    port: 8080,
    healthPath: '/healthz',
    callers: [ingressPods(c)],
    adminAccessFrom: [Pods.select(c, 'Prometheus', { labels: { 'app.kubernetes.io/name': 'prometheus' } })],
    budgets: [Budget.usdPerDay(50), Budget.usdPerMonth(5).forUser(), Budget.tokensPerDay(100_000).forTeam()],
    rateLimits: [RateLimit.requestsPerMinute(20).forUser()],
    loopGuard: LoopGuard.of({ maxIterations: 25, maxDuration: Duration.minutes(10) }),
    guardrails: Guardrails.of({ redactPii: true, blockInjection: true }),
    store: BudgetStore.redis({ url: 'redis://redis.data.svc.cluster.local:6379', passwordSecret: SecretKey.fromSecret('redis', 'password') }),
    env: { LOG_LEVEL: 'info' },
    secretEnv: { CRM_TOKEN: SecretKey.fromSecret('support-crm', 'token') },
  });
  return { c, a, objects: synth(c) };
}

describe('AgentService', () => {
  test('snapshot', () => {
    expect(fullAgent().objects).toMatchSnapshot();
  });

  test('emits stable names, all in the chart namespace', () => {
    const { objects } = fullAgent();
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/support-chat-prompt',
      'ConfigMap/support-chat-sidecar-bundle',
      'ConfigMap/support-chat-sidecar-config',
      'Deployment/support-chat',
      'NetworkPolicy/support-chat',
      'PodDisruptionBudget/support-chat',
      'Service/support-chat',
      'ServiceAccount/support-chat',
    ]);
    for (const o of objects) expect(o.metadata.namespace).toBe('agents');
    for (const o of objects) expect(o.metadata.labels['app.kubernetes.io/name']).toBe('support-chat');
  });

  test('the output passes the Kubernetes 1.28 schema, restricted Pod Security and read-only roots', () => {
    const { objects } = fullAgent();
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('the Deployment is the default child and every object is reachable and patchable', () => {
    const { c, a } = fullAgent();
    expect(a.node.defaultChild).toBe(a.deployment);
    a.deployment.addJsonPatch(JsonPatch.add('/spec/template/spec/priorityClassName', 'agents'));
    ApiObject.of(a.service!).addJsonPatch(JsonPatch.add('/spec/sessionAffinity', 'ClientIP'));
    const objects = synth(c);
    expect(find(objects, 'Deployment', 'support-chat').spec.template.spec.priorityClassName).toBe('agents');
    expect(find(objects, 'Service', 'support-chat').spec.sessionAffinity).toBe('ClientIP');
  });

  test('pods are restricted: non-root, no privilege escalation, no capabilities, read-only root, seccomp', () => {
    const deployment = find(fullAgent().objects, 'Deployment', 'support-chat');
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
    for (const c of pod.containers) {
      expect(c.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      // The only writable path is a bounded emptyDir of its own.
      const tmp = c.volumeMounts.find((m: Json) => m.mountPath === '/tmp');
      expect(volume(deployment, tmp.name)?.emptyDir.sizeLimit).toBeDefined();
    }
    expect(pod.containers.map((c: Json) => c.name).sort()).toEqual(['agent', 'cdk-agents-sidecar']);
  });

  test('the agent container holds no provider key: no key env from Secrets, no Secret volume', () => {
    const { objects } = fullAgent();
    const deployment = find(objects, 'Deployment', 'support-chat');
    const a = container(deployment, 'agent');
    const secretVolumes = new Set(deployment.spec.template.spec.volumes.filter((v: Json) => v.secret).map((v: Json) => v.name));
    expect(a.volumeMounts.filter((m: Json) => secretVolumes.has(m.name))).toEqual([]);
    const fromSecrets = a.env.filter((e: Json) => e.valueFrom?.secretKeyRef).map((e: Json) => e.valueFrom.secretKeyRef.name);
    expect(fromSecrets).toEqual(['support-crm']);
    expect(JSON.stringify(a)).not.toContain('llm-keys');
    // The SDKs need some key to start; the agent gets a stand-in, never the real one.
    expect(env(a, 'OPENAI_API_KEY')).toEqual({ name: 'OPENAI_API_KEY', value: PLACEHOLDER_API_KEY });
    expect(env(a, 'ANTHROPIC_API_KEY')).toEqual({ name: 'ANTHROPIC_API_KEY', value: PLACEHOLDER_API_KEY });
  });

  test('the agent container is wired to its sidecar, prompt and tools', () => {
    const deployment = find(fullAgent().objects, 'Deployment', 'support-chat');
    const a = container(deployment, 'agent');
    const values = Object.fromEntries(a.env.filter((e: Json) => 'value' in e).map((e: Json) => [e.name, e.value]));
    expect(values).toMatchObject({
      AGENT_NAME: 'support-chat',
      AGENT_MODEL: 'gpt-4o-mini',
      OPENAI_BASE_URL: 'http://127.0.0.1:8787/v1',
      ANTHROPIC_BASE_URL: 'http://127.0.0.1:8787',
      AGENT_TOOLS_URL: 'http://127.0.0.1:8787/tools',
      AGENT_PROMPT_FILE: '/etc/agent/prompt.md',
      AGENT_TOOLS_FILE: '/etc/agent/tools.json',
      LOG_LEVEL: 'info',
    });
    expect(env(a, 'CRM_TOKEN')).toEqual({ name: 'CRM_TOKEN', valueFrom: { secretKeyRef: { name: 'support-crm', key: 'token' } } });
    expect(a.volumeMounts).toContainEqual({ name: 'agent-config', mountPath: '/etc/agent', readOnly: true });
    expect(volume(deployment, 'agent-config')?.configMap.name).toBe('support-chat-prompt');
    expect(a.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(a.readinessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(a.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(a.resources).toEqual({ requests: { cpu: '250m', memory: '512Mi' }, limits: { cpu: '1', memory: '1024Mi' } });
  });

  test('the sidecar runs the bundle with the runtime flags, mounts config, bundle and keys, probes the admin port', () => {
    const deployment = find(fullAgent().objects, 'Deployment', 'support-chat');
    const s = container(deployment, 'cdk-agents-sidecar');
    expect(s.image).toBe(NODE_IMAGE);
    expect(s.command).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js']);
    expect(s.args).toEqual(['--config', '/etc/cdk-agents/config/sidecar.json']);
    expect(s.ports).toEqual([{ name: 'metrics', containerPort: 8788, protocol: 'TCP' }]);
    expect(s.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(s.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(s.resources).toEqual({ requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '192Mi' } });
    const mounts = Object.fromEntries(s.volumeMounts.map((m: Json) => [m.mountPath, m]));
    expect(mounts['/etc/cdk-agents/config']).toMatchObject({ name: 'sidecar-config', readOnly: true });
    expect(mounts['/opt/cdk-agents']).toMatchObject({ name: 'sidecar-bundle', readOnly: true });
    expect(mounts['/var/run/cdk-agents/providers/openai']).toMatchObject({ name: 'provider-openai', readOnly: true });
    expect(mounts['/var/run/cdk-agents/providers/anthropic']).toMatchObject({ name: 'provider-anthropic', readOnly: true });
    expect(mounts['/var/run/cdk-agents/approvals']).toMatchObject({ name: 'approver-token', readOnly: true });
    expect(mounts['/var/run/cdk-agents/redis']).toMatchObject({ name: 'redis-password', readOnly: true });
    // Whole-volume mounts (no subPath), so a rotated Secret reaches the runtime's file re-reads.
    for (const m of s.volumeMounts) expect(m.subPath).toBeUndefined();
    expect(volume(deployment, 'provider-openai')).toEqual({
      name: 'provider-openai',
      secret: { secretName: 'llm-keys', defaultMode: 0o440, items: [{ key: 'openai', path: 'api-key' }] },
    });
    // The kubelet holds the agent's start until the sidecar is ready.
    expect(deployment.spec.template.spec.containers[0].name).toBe('cdk-agents-sidecar');
    expect(s.lifecycle.postStart.exec.command.slice(0, 2)).toEqual(['node', '-e']);
    expect(s.lifecycle.postStart.exec.command[2]).toContain('127.0.0.1:8788/readyz');
  });

  test('the sidecar config is the validated config, its files matching the mounts', () => {
    const { objects } = fullAgent();
    const config = sidecarJson(objects, 'support-chat-sidecar-config');
    expect(() => parseSidecarConfig(config)).not.toThrow();
    expect(config).toMatchObject({
      version: 1,
      mode: 'sidecar',
      agent: { name: 'support-chat', team: 'customer-care' },
      listen: { host: '127.0.0.1', port: 8787 },
      admin: { host: '0.0.0.0', port: 8788 },
      shutdown: { drainMs: 25000 },
      approvals: { token: { file: '/var/run/cdk-agents/approvals/token' } },
      store: { type: 'redis', url: 'redis://redis.data.svc.cluster.local:6379', password: { file: '/var/run/cdk-agents/redis/password' } },
      guardrails: { output: { pii: true }, actions: { 'input.injection': 'block' } },
      loopGuard: { maxIterations: 25, maxDurationMs: 600000 },
    });
    expect(config.providers).toEqual([
      { name: 'openai', type: 'openai', baseUrl: 'https://api.openai.com/v1', apiKey: { file: '/var/run/cdk-agents/providers/openai/api-key' } },
      {
        name: 'anthropic',
        type: 'anthropic',
        baseUrl: 'https://api.anthropic.com',
        apiKey: { file: '/var/run/cdk-agents/providers/anthropic/api-key' },
        fallbackModel: 'claude-sonnet-4-6',
      },
    ]);
    expect(config.budgets).toEqual([
      { scope: 'agent', unit: 'usd', period: 'day', limit: 50 },
      { scope: 'user', unit: 'usd', period: 'month', limit: 5 },
      { scope: 'team', unit: 'tokens', period: 'day', limit: 100000 },
    ]);
    expect(config.rateLimits).toEqual([{ scope: 'user', unit: 'requests', perMinute: 20 }]);
    expect(config.tools.map((t: Json) => [t.name, t.endpoint, t.requiresApproval])).toEqual([
      ['lookup_order', 'http://orders.shop.svc.cluster.local/lookup', false],
      ['issue_refund', 'https://payments.example.com/refunds', true],
    ]);
  });

  test('prompt and tool definitions are in a ConfigMap; the tools point at the sidecar', () => {
    const prompt = find(fullAgent().objects, 'ConfigMap', 'support-chat-prompt');
    expect(prompt.data['prompt.md']).toBe('You help customers with their orders.');
    expect(JSON.parse(prompt.data['tools.json'])).toEqual([
      {
        name: 'lookup_order',
        description: 'Look up an order by its number.',
        parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] },
        url: 'http://127.0.0.1:8787/tools/lookup_order',
        requiresApproval: false,
      },
      {
        name: 'issue_refund',
        description: 'Refund an order.',
        parameters: { type: 'object', properties: { order_id: { type: 'string' } } },
        url: 'http://127.0.0.1:8787/tools/issue_refund',
        requiresApproval: true,
      },
    ]);
  });

  test('the termination grace period covers the sidecar drain', () => {
    const pod = (objects: Json[]) => find(objects, 'Deployment', 'support-chat').spec.template.spec;
    expect(pod(fullAgent().objects).terminationGracePeriodSeconds).toBe(35);
    const c = chart();
    agent(c, 'SupportChat', { drainTimeout: Duration.seconds(60) });
    const objects = synth(c);
    expect(pod(objects).terminationGracePeriodSeconds).toBe(70);
    expect(sidecarJson(objects, 'support-chat-sidecar-config').shutdown.drainMs).toBe(60000);
  });

  describe('NetworkPolicy', () => {
    const policyOf = (objects: Json[]) => find(objects, 'NetworkPolicy', 'support-chat').spec;

    test('default deny both ways, selecting the agent pods', () => {
      const policy = policyOf(fullAgent().objects);
      expect(policy.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
      expect(policy.podSelector).toEqual({ matchLabels: { 'app.kubernetes.io/name': 'support-chat', 'app.kubernetes.io/component': 'agent' } });
    });

    test('ingress only from callers to the agent port and from admin peers to 8788', () => {
      const policy = policyOf(fullAgent().objects);
      expect(policy.ingress).toEqual([
        {
          from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } } }],
          ports: [{ port: 8080, protocol: 'TCP' }],
        },
        {
          from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }],
          ports: [{ port: 8788, protocol: 'TCP' }],
        },
      ]);
    });

    test('no callers and no admin peers: no ingress at all', () => {
      const c = chart();
      agent(c);
      const policy = policyOf(synth(c));
      expect(policy.ingress).toBeUndefined();
      expect(policy.policyTypes).toContain('Ingress');
    });

    test('egress: DNS, providers on 443 to the internet without private ranges or metadata, Redis, tools', () => {
      const policy = policyOf(fullAgent().objects);
      expect(policy.egress[0]).toEqual({
        to: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
          },
        ],
        ports: [
          { port: 53, protocol: 'UDP' },
          { port: 53, protocol: 'TCP' },
        ],
      });
      const internet = policy.egress.filter((r: Json) => r.to[0].ipBlock?.cidr === '0.0.0.0/0' && r.to[0].ipBlock.except);
      // Both providers and the external tool share one rule.
      expect(internet).toHaveLength(1);
      expect(internet[0].ports).toEqual([{ port: 443, protocol: 'TCP' }]);
      expect(internet[0].to[0].ipBlock.except).toEqual(expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']));
      // The in-cluster tool without a declared peer: any pod, on its pod port.
      expect(policy.egress).toContainEqual({ to: [{ namespaceSelector: {}, podSelector: {} }], ports: [{ port: 8080, protocol: 'TCP' }] });
      // Redis without a declared peer: its port to pods and to any address.
      expect(policy.egress).toContainEqual({ to: [{ namespaceSelector: {}, podSelector: {} }], ports: [{ port: 6379, protocol: 'TCP' }] });
      expect(policy.egress).toContainEqual({ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }], ports: [{ port: 6379, protocol: 'TCP' }] });
    });

    test('declared peers narrow tool and Redis egress', () => {
      const c = chart();
      const orders = Pods.select(c, 'Orders', { labels: { app: 'orders' } });
      const redis = NetworkPolicyIpBlock.ipv4(c, 'ManagedRedis', '10.20.0.0/24');
      agent(c, 'SupportChat', {
        tools: [AgentTool.http({ name: 'lookup', description: 'd', parameters: { type: 'object' }, endpoint: 'http://orders/lookup', peer: orders, targetPort: 9000 })],
        store: BudgetStore.redis({ url: 'rediss://10.20.0.5:6380', peer: redis }),
        replicas: 1,
      });
      const egress = policyOf(synth(c)).egress;
      expect(egress).toContainEqual({ to: [{ podSelector: { matchLabels: { app: 'orders' } } }], ports: [{ port: 9000, protocol: 'TCP' }] });
      expect(egress).toContainEqual({ to: [{ ipBlock: { cidr: '10.20.0.0/24' } }], ports: [{ port: 6380, protocol: 'TCP' }] });
      expect(egress.some((r: Json) => r.to[0].podSelector && Object.keys(r.to[0].podSelector).length === 0)).toBe(false);
    });

    test('allowFrom another agent opens its egress and this ingress', () => {
      const c = chart();
      const backend = agent(c, 'Backend', { port: 8080 });
      const frontend = agent(c, 'Frontend');
      backend.allowFrom(frontend);
      const objects = synth(c);
      const peer = (name: string) => ({
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'agents' } },
        podSelector: { matchLabels: { 'app.kubernetes.io/name': name, 'app.kubernetes.io/component': 'agent' } },
      });
      expect(find(objects, 'NetworkPolicy', 'backend').spec.ingress).toEqual([{ from: [peer('frontend')], ports: [{ port: 8080, protocol: 'TCP' }] }]);
      expect(find(objects, 'NetworkPolicy', 'frontend').spec.egress).toContainEqual({ to: [peer('backend')], ports: [{ port: 8080, protocol: 'TCP' }] });
    });
  });

  describe('scaling', () => {
    test('2 replicas by default, with a PodDisruptionBudget of maxUnavailable 1 and no HPA', () => {
      const { objects } = fullAgent();
      expect(find(objects, 'Deployment', 'support-chat').spec.replicas).toBe(2);
      expect(find(objects, 'PodDisruptionBudget', 'support-chat').spec).toEqual({
        maxUnavailable: 1,
        selector: { matchLabels: { 'app.kubernetes.io/name': 'support-chat', 'app.kubernetes.io/component': 'agent' } },
        unhealthyPodEvictionPolicy: 'AlwaysAllow',
      });
      expect(findAll(objects, 'HorizontalPodAutoscaler')).toEqual([]);
    });

    test('one replica: no PodDisruptionBudget (it would block every drain)', () => {
      const c = chart();
      agent(c, 'SupportChat', { replicas: 1 });
      expect(findAll(synth(c), 'PodDisruptionBudget')).toEqual([]);
    });

    test('autoscaling: an HPA on CPU and in-flight requests owns the replica count', () => {
      const c = chart();
      agent(c, 'SupportChat', { autoscaling: { minReplicas: 2, maxReplicas: 8, inFlightTarget: 4 } });
      const objects = synth(c);
      expect(find(objects, 'Deployment', 'support-chat').spec.replicas).toBeUndefined();
      expect(find(objects, 'PodDisruptionBudget', 'support-chat').spec.maxUnavailable).toBe(1);
      expect(find(objects, 'HorizontalPodAutoscaler', 'support-chat').spec).toEqual({
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'support-chat' },
        minReplicas: 2,
        maxReplicas: 8,
        metrics: [
          { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
          { type: 'Pods', pods: { metric: { name: 'llm_requests_in_flight' }, target: { type: 'AverageValue', averageValue: '4' } } },
        ],
      });
    });

    test('pods spread over zones (best effort) and nodes (strict), per ReplicaSet', () => {
      const spread = find(fullAgent().objects, 'Deployment', 'support-chat').spec.template.spec.topologySpreadConstraints;
      expect(spread.map((s: Json) => [s.topologyKey, s.whenUnsatisfiable, s.matchLabelKeys])).toEqual([
        ['topology.kubernetes.io/zone', 'ScheduleAnyway', ['pod-template-hash']],
        ['kubernetes.io/hostname', 'DoNotSchedule', ['pod-template-hash']],
      ]);
    });
  });

  describe('checksum', () => {
    const checksumOf = (objects: Json[]) => find(objects, 'Deployment', 'support-chat').spec.template.metadata.annotations[CHECKSUM_ANNOTATION];

    test('stable across synths of the same code', () => {
      expect(checksumOf(fullAgent().objects)).toBe(checksumOf(fullAgent().objects));
      expect(checksumOf(fullAgent().objects)).toMatch(/^[0-9a-f]{64}$/);
    });

    test('changes when the prompt changes', () => {
      const withPrompt = (text: string) => {
        const c = chart();
        agent(c, 'SupportChat', { systemPrompt: SystemPrompt.fromText(text) });
        return checksumOf(synth(c));
      };
      expect(withPrompt('Be helpful.')).not.toBe(withPrompt('Be very helpful.'));
    });

    test('changes when a budget changes', () => {
      const withBudget = (usd: number) => {
        const c = chart();
        agent(c, 'SupportChat', { budgets: [Budget.usdPerDay(usd)], acceptPerReplicaBudgets: true });
        return checksumOf(synth(c));
      };
      expect(withBudget(10)).not.toBe(withBudget(20));
    });
  });

  test('addTool, addBudget, addEnv and addProvider after construction reach the output', () => {
    const c = chart();
    const a = agent(c, 'SupportChat', { replicas: 1 });
    const before = find(synth(c), 'Deployment', 'support-chat').spec.template.metadata.annotations[CHECKSUM_ANNOTATION];
    a.addTool(lookupOrder());
    a.addBudget(Budget.usdPerDay(5));
    a.addEnv('FEATURE_X', 'on');
    a.addProvider(LlmProvider.openAiCompatible({ name: 'vllm', baseUrl: 'http://vllm.models.svc.cluster.local:8000/v1' }));
    const objects = synth(c);
    expect(JSON.parse(find(objects, 'ConfigMap', 'support-chat-prompt').data['tools.json']).map((t: Json) => t.name)).toEqual(['lookup_order']);
    const config = sidecarJson(objects, 'support-chat-sidecar-config');
    expect(config.tools.map((t: Json) => t.name)).toEqual(['lookup_order']);
    expect(config.budgets).toEqual([{ scope: 'agent', unit: 'usd', period: 'day', limit: 5 }]);
    expect(config.providers.map((p: Json) => p.name)).toEqual(['openai', 'vllm']);
    const deployment = find(objects, 'Deployment', 'support-chat');
    expect(env(container(deployment, 'agent'), 'FEATURE_X')).toEqual({ name: 'FEATURE_X', value: 'on' });
    expect(deployment.spec.template.metadata.annotations[CHECKSUM_ANNOTATION]).not.toBe(before);
    expect(find(objects, 'NetworkPolicy', 'support-chat').spec.egress).toContainEqual({
      to: [{ namespaceSelector: {}, podSelector: {} }],
      ports: [{ port: 8000, protocol: 'TCP' }],
    });
  });

  test('addConfigOverride sets runtime fields the props do not cover', () => {
    const c = chart();
    const a = agent(c);
    a.addConfigOverride('timeouts.firstByteMs', 120000);
    a.addConfigOverride('audit.captureContent', true);
    const config = sidecarJson(synth(c), 'support-chat-sidecar-config');
    expect(config.timeouts.firstByteMs).toBe(120000);
    expect(config.audit.captureContent).toBe(true);
  });

  test('no port: no Service and no probes on the agent container', () => {
    const c = chart();
    agent(c);
    const objects = synth(c);
    expect(findAll(objects, 'Service')).toEqual([]);
    const a = container(find(objects, 'Deployment', 'support-chat'), 'agent');
    expect(a.ports).toBeUndefined();
    expect(a.readinessProbe).toBeUndefined();
  });

  test('a port without healthPath: TCP probes; the Service maps the port', () => {
    const c = chart();
    agent(c, 'SupportChat', { port: 3000 });
    const objects = synth(c);
    expect(container(find(objects, 'Deployment', 'support-chat'), 'agent').readinessProbe.tcpSocket).toEqual({ port: 'http' });
    expect(find(objects, 'Service', 'support-chat').spec).toMatchObject({
      ports: [{ name: 'http', port: 3000, targetPort: 3000 }],
      selector: { 'app.kubernetes.io/name': 'support-chat', 'app.kubernetes.io/component': 'agent' },
    });
  });

  test('the ServiceAccount has no API token unless asked for', () => {
    const c = chart();
    agent(c, 'Plain');
    agent(c, 'Operator', { serviceAccountToken: true });
    const objects = synth(c);
    expect(find(objects, 'ServiceAccount', 'plain').automountServiceAccountToken).toBe(false);
    expect(find(objects, 'ServiceAccount', 'operator').automountServiceAccountToken).toBe(true);
    expect(find(objects, 'Deployment', 'operator').spec.template.spec.automountServiceAccountToken).toBe(true);
  });

  test('partial resources keep the other defaults; the agent user is configurable', () => {
    const c = chart();
    agent(c, 'SupportChat', { resources: { memory: { limit: Size.gibibytes(2) } }, runAsUser: 10001, runAsGroup: 10001 });
    const a = container(find(synth(c), 'Deployment', 'support-chat'), 'agent');
    expect(a.resources).toEqual({ requests: { cpu: '250m', memory: '512Mi' }, limits: { cpu: '1', memory: '2048Mi' } });
    expect(a.securityContext).toMatchObject({ runAsUser: 10001, runAsGroup: 10001 });
  });

  test('image delivery: no bundle ConfigMap, the image entrypoint runs the runtime', () => {
    const c = chart();
    agent(c, 'SupportChat', { sidecar: SidecarDelivery.image('registry.example.com/cdk-agents-sidecar:0.1.0') });
    const objects = synth(c);
    expect(findAll(objects, 'ConfigMap').map((o) => o.metadata.name)).not.toContain('support-chat-sidecar-bundle');
    const deployment = find(objects, 'Deployment', 'support-chat');
    const s = container(deployment, 'cdk-agents-sidecar');
    expect(s.image).toBe('registry.example.com/cdk-agents-sidecar:0.1.0');
    expect(s.command).toBeUndefined();
    expect(s.args).toEqual(['--config', '/etc/cdk-agents/config/sidecar.json']);
    expect(volume(deployment, 'sidecar-bundle')).toBeUndefined();
  });

  test('the bundle ConfigMap carries the bundle byte for byte through YAML, and asks for server-side apply', () => {
    const c = chart();
    agent(c);
    const bundle = find(synth(c), 'ConfigMap', 'support-chat-sidecar-bundle');
    const roundTripped = Yaml.load(writeTemp(Yaml.stringify(bundle)))[0];
    expect(roundTripped.data['sidecar.js']).toBe(fs.readFileSync(FIXTURE_BUNDLE, 'utf8'));
    expect(bundle.metadata.annotations).toEqual({ 'argocd.argoproj.io/sync-options': 'ServerSideApply=true' });
  });

  test('AWS Secrets Manager references become ExternalSecrets, the sidecar keys apart from the agent secrets', () => {
    const c = chart();
    const a = agent(c, 'SupportChat', {
      providers: [LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('prod/llm/openai', 'api_key') })],
      secretEnv: { CRM_TOKEN: SecretKey.fromAwsSecretsManager('prod/support/crm') },
      secretStore: SecretStoreRef.clusterSecretStore('aws'),
    });
    const objects = synth(c);
    expect(a.sidecarExternalSecret).toBeDefined();
    expect(find(objects, 'ExternalSecret', 'support-chat-sidecar-secrets').spec).toEqual({
      refreshInterval: '1h',
      secretStoreRef: { name: 'aws', kind: 'ClusterSecretStore' },
      target: { name: 'support-chat-sidecar-secrets', creationPolicy: 'Owner' },
      data: [{ secretKey: 'openai-api-key', remoteRef: { key: 'prod/llm/openai', property: 'api_key' } }],
    });
    expect(find(objects, 'ExternalSecret', 'support-chat-agent-secrets').spec.data).toEqual([{ secretKey: 'CRM_TOKEN', remoteRef: { key: 'prod/support/crm' } }]);
    const deployment = find(objects, 'Deployment', 'support-chat');
    expect(volume(deployment, 'provider-openai')?.secret.secretName).toBe('support-chat-sidecar-secrets');
    expect(env(container(deployment, 'agent'), 'CRM_TOKEN')?.valueFrom.secretKeyRef).toEqual({ name: 'support-chat-agent-secrets', key: 'CRM_TOKEN' });
    expect(validateManifests(objects)).toEqual([]);
  });

  test('the name derives from the construct id; the namespace prop overrides the chart', () => {
    const c = bareChart();
    new AgentService(c, 'BillingAssistant', minimalProps({ namespace: 'billing' }));
    const objects = synth(c);
    expect(find(objects, 'Deployment', 'billing-assistant').metadata.namespace).toBe('billing');
    for (const o of objects) expect(o.metadata.namespace).toBe('billing');
  });

  test('the Dockerfile runs the runtime with the same image, flags and paths', () => {
    const dockerfile = fs.readFileSync(path.join(__dirname, '..', '..', 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain(`FROM ${NODE_IMAGE}\n`);
    expect(dockerfile).toContain(`ENTRYPOINT ${JSON.stringify(['node', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js'])}`.replace(/","/g, '", "'));
    expect(dockerfile).toContain('CMD ["--config", "/etc/cdk-agents/config/sidecar.json"]');
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
  });
});

function writeTemp(text: string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-agents-')), 'object.yaml');
  fs.writeFileSync(file, text);
  return file;
}
