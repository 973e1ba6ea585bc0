/**
 * The example platform, Kubernetes side: `npm run synth` writes it to dist/k8s, one folder per
 * chart and one file per resource, with stable names for small GitOps diffs.
 *
 * A customer-support chat agent behind a central LLM gateway (OpenAI first, Anthropic as the
 * fallback), in the namespace of the platform spec. Every name shared with the cloud side (IAM
 * roles, the queue, secrets, the SecretStore) comes from examples/platform.ts through
 * AgentPlatform: nothing is copied from `cdktf apply`. Secrets are references, never in git.
 */
import * as path from 'node:path';
import { App, Chart, Duration, YamlOutputType } from 'cdk8s';
import { Namespaces, Pods } from 'cdk8s-plus-28';
import {
  AgentAlerts,
  AgentDashboards,
  AgentImage,
  AgentMonitoring,
  AgentPlatform,
  AgentService,
  AgentTool,
  ApproverToken,
  Budget,
  BudgetGuard,
  GatewayCache,
  Guardrails,
  K8sRules,
  LlmGateway,
  LlmProvider,
  LoopGuard,
  RateLimit,
  SystemPrompt,
  QueueWorker,
  WarmPool,
  WarmPoolSize,
} from '../lib';
import { platform as platformSpec } from './platform';

const app = new App({ yamlOutputType: YamlOutputType.FOLDER_PER_CHART_FILE_PER_RESOURCE });
const chart = new Chart(app, 'platform', { namespace: platformSpec.kubernetes.namespace, disableResourceNameHashes: true });

// The SecretStore (IRSA) and every shared name, from the one spec; checked against the chart at synth.
const platform = new AgentPlatform(chart, 'Platform', { spec: platformSpec });

// Shared state for budgets, rate limits, pending approvals and the gateway's cache: the ElastiCache
// Redis of the cloud side, its URL and AUTH token read from the secret Terraform writes at apply.
const store = () => platform.redisStore();
// Prometheus scrapes the admin ports (and approvers reach the approvals API there).
const prometheus = Pods.select(chart, 'Prometheus', {
  labels: { 'app.kubernetes.io/name': 'prometheus' },
  namespaces: Namespaces.select(chart, 'MonitoringNamespace', { names: ['monitoring'] }),
});

const gateway = new LlmGateway(chart, 'LlmGateway', {
  providers: [
    LlmProvider.openai({ apiKey: platform.providerKey('openai') }),
    // Serves OpenAI-shaped requests too when OpenAI is down.
    LlmProvider.anthropic({
      apiKey: platform.providerKey('anthropic'),
      fallbackModel: 'claude-sonnet-4-6',
      modelMap: { 'gpt-4o-mini': 'claude-sonnet-4-6' },
    }),
  ],
  secretStore: platform.secretStoreRef,
  awsRole: platform.roleOf('llm-gateway'),
  store: store(),
  cache: GatewayCache.redis({ ttl: Duration.minutes(10) }),
  adminAccessFrom: [prometheus],
});

const orders = Pods.select(chart, 'Orders', {
  labels: { 'app.kubernetes.io/name': 'orders' },
  namespaces: Namespaces.select(chart, 'ShopNamespace', { names: ['shop'] }),
});
const ingress = Pods.select(chart, 'IngressNginx', {
  labels: { 'app.kubernetes.io/name': 'ingress-nginx' },
  namespaces: Namespaces.select(chart, 'IngressNamespace', { names: ['ingress-nginx'] }),
});

const supportChat = new AgentService(chart, 'SupportChat', {
  image: AgentImage.fromRegistry('ghcr.io/acme/support-chat:1.4.2'),
  systemPrompt: SystemPrompt.fromFile(path.join(__dirname, 'prompts', 'support.md')),
  model: 'gpt-4o-mini',
  team: 'customer-care',
  gateway,
  port: 8080,
  healthPath: '/healthz',
  callers: [ingress],
  adminAccessFrom: [prometheus],
  autoscaling: { minReplicas: 2, maxReplicas: 6 },
  tools: [
    AgentTool.http({
      name: 'lookup_order',
      description: 'Look up an order of the signed-in customer by its number: status, items, amounts, delivery date.',
      parameters: {
        type: 'object',
        properties: { order_id: { type: 'string', pattern: '^[A-Z0-9-]{6,20}$', description: 'The order number, e.g. AC-123456.' } },
        required: ['order_id'],
        additionalProperties: false,
      },
      endpoint: 'http://orders.shop.svc.cluster.local/v1/orders/lookup',
      peer: orders,
      targetPort: 8080,
      timeout: Duration.seconds(5),
    }),
    AgentTool.http({
      name: 'issue_refund',
      description: 'Request a refund for an order (all of it or some items). A person approves every refund before it is paid.',
      parameters: {
        type: 'object',
        properties: {
          order_id: { type: 'string', pattern: '^[A-Z0-9-]{6,20}$' },
          amount_eur: { type: 'number', exclusiveMinimum: 0 },
          reason: { type: 'string', enum: ['not_delivered', 'damaged', 'wrong_item', 'returned', 'other'] },
        },
        required: ['order_id', 'amount_eur', 'reason'],
        additionalProperties: false,
      },
      endpoint: 'https://payments.acme.example/v1/refunds',
      requiresApproval: true,
      approvalTimeout: Duration.hours(24),
      timeout: Duration.seconds(10),
    }),
  ],
  approvals: ApproverToken.fromSecret('support-chat-approvers', 'token'),
  // Budgets, rate limits and the loop guard: SupportBudgets below.
  guardrails: Guardrails.defaults(),
  store: store(),
  secretStore: platform.secretStoreRef,
  // It hands research tasks to the worker's queue (the cloud side grants it sqs:SendMessage).
  awsRole: platform.roleOf('support-chat'),
});

// ---------------------------------------------------------------------------------------------
// Background research worker: takes research tasks from SQS (support-chat hands them over),
// scaled by KEDA on the queue, kept warm by a WarmPool, budgets per agent and per end user in the
// shared Redis. The queue, the worker's IAM role (IRSA) and KEDA's role are created by the cloud
// side under the names the spec gives them.

const researchWorker = new QueueWorker(chart, 'ResearchWorker', {
  image: AgentImage.fromRegistry('ghcr.io/acme/research-worker:0.9.3'),
  systemPrompt: SystemPrompt.fromFile(path.join(__dirname, 'prompts', 'research.md')),
  model: 'gpt-4o-mini',
  team: 'customer-care',
  gateway,
  queue: platform.workerQueue('research-worker'),
  // Below the queue's visibility timeout (15 minutes): a task still running is never handed to a second pod.
  maxTaskDuration: Duration.minutes(10),
  minReplicas: 1,
  maxReplicas: 8,
  // The worker's own health endpoint: probes only (no callers are allowed in).
  port: 8080,
  healthPath: '/healthz',
  adminAccessFrom: [prometheus],
  budgets: [Budget.usdPerDay(100), Budget.usdPerDay(5).forUser(), Budget.usdPerDay(3).forRun()],
  loopGuard: LoopGuard.of({ maxIterations: 40, maxCostUsd: 3, maxDuration: Duration.minutes(10), maxRepeats: 4 }),
  guardrails: Guardrails.defaults(),
  store: store(),
  secretStore: platform.secretStoreRef,
});
new WarmPool(chart, 'ResearchWarmPool', {
  agent: researchWorker,
  // One idle worker beyond the backlog, room for one more pod on the nodes, images on every node.
  readyBuffer: WarmPoolSize.replicas(1),
  placeholders: WarmPoolSize.replicas(1),
});

// ---------------------------------------------------------------------------------------------
// Budgets and observability. kube-prometheus-stack (release `kube-prometheus-stack`, namespace
// `monitoring`) picks up monitors and rules labelled with its release, and dashboards labelled
// grafana_dashboard: "1" in its namespace.
const kubePrometheusStack = { release: 'kube-prometheus-stack' };

// The support agent's spending caps, per agent, per end user and per run, with its loop guard, kept
// in the shared Redis (fail-closed when it is unreachable); with the alerts watching them.
new BudgetGuard(chart, 'SupportBudgets', {
  budgets: [Budget.usdPerDay(50), Budget.usdPerMonth(5).forUser(), Budget.usdPerDay(2).forRun()],
  rateLimits: [RateLimit.requestsPerMinute(20).forUser()],
  loopGuard: LoopGuard.of({ maxIterations: 25, maxCostUsd: 1, maxDuration: Duration.minutes(10), maxRepeats: 4 }),
  store: store(),
  agents: [supportChat],
  alerts: { labels: kubePrometheusStack },
});
// A ceiling per calling agent at the gateway, whatever each agent declares itself.
new BudgetGuard(chart, 'GatewayBudgets', {
  budgets: [Budget.usdPerDay(500)],
  rateLimits: [RateLimit.tokensPerMinute(2_000_000)],
  store: store(),
  gateways: [gateway],
  alerts: { labels: kubePrometheusStack },
});
// The research worker's own budgets are inline; its alerts without a guard.
new AgentAlerts(chart, 'ResearchAlerts', { agents: [researchWorker], labels: kubePrometheusStack });

new AgentMonitoring(chart, 'Monitoring', {
  prometheus,
  labels: kubePrometheusStack,
  agents: [supportChat, researchWorker],
  gateways: [gateway],
});
new AgentDashboards(chart, 'Dashboards', { name: 'cdk-agents', namespace: 'monitoring', folder: 'AI agents' });

// The cdk-agents rule pack (AGT-K8S-1...): any error finding fails the synth, listed.
K8sRules.applyTo(app);
app.synth();
