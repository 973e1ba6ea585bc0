/**
 * The example platform, Kubernetes side: `npm run synth` writes it to dist/k8s, one folder per
 * chart and one file per resource, with stable names for small GitOps diffs.
 *
 * A customer-support chat agent behind a central LLM gateway (OpenAI first, Anthropic as the
 * fallback), in namespace `agents`. Secrets are references: created out of band (see the
 * README's "Kubernetes constructs" section), never in git.
 */
import * as path from 'node:path';
import { App, Chart, Duration, YamlOutputType } from 'cdk8s';
import { Namespaces, Pods } from 'cdk8s-plus-28';
import {
  AgentImage,
  AgentService,
  AgentTool,
  ApproverToken,
  Budget,
  BudgetStore,
  GatewayCache,
  Guardrails,
  LlmGateway,
  LlmProvider,
  LoopGuard,
  RateLimit,
  SecretKey,
  SecretStoreRef,
  SystemPrompt,
} from '../lib';

const app = new App({ yamlOutputType: YamlOutputType.FOLDER_PER_CHART_FILE_PER_RESOURCE });
const chart = new Chart(app, 'platform', { namespace: 'agents', disableResourceNameHashes: true });

// Shared state for budgets, rate limits, pending approvals and the gateway's cache.
const redis = Pods.select(chart, 'Redis', {
  labels: { 'app.kubernetes.io/name': 'redis' },
  namespaces: Namespaces.select(chart, 'RedisNamespace', { names: ['redis'] }),
});
const store = () =>
  BudgetStore.redis({
    url: 'redis://redis-master.redis.svc.cluster.local:6379',
    passwordSecret: SecretKey.fromSecret('agents-redis', 'password'),
    peer: redis,
  });
// Prometheus scrapes the admin ports (and approvers reach the approvals API there).
const prometheus = Pods.select(chart, 'Prometheus', {
  labels: { 'app.kubernetes.io/name': 'prometheus' },
  namespaces: Namespaces.select(chart, 'MonitoringNamespace', { names: ['monitoring'] }),
});

const gateway = new LlmGateway(chart, 'LlmGateway', {
  providers: [
    LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('prod/llm/openai', 'api_key') }),
    // Serves OpenAI-shaped requests too when OpenAI is down.
    LlmProvider.anthropic({
      apiKey: SecretKey.fromAwsSecretsManager('prod/llm/anthropic', 'api_key'),
      fallbackModel: 'claude-sonnet-4-6',
      modelMap: { 'gpt-4o-mini': 'claude-sonnet-4-6' },
    }),
  ],
  secretStore: SecretStoreRef.clusterSecretStore('aws-secrets-manager'),
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

new AgentService(chart, 'SupportChat', {
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
  budgets: [Budget.usdPerDay(50), Budget.usdPerMonth(5).forUser(), Budget.usdPerDay(2).forRun()],
  rateLimits: [RateLimit.requestsPerMinute(20).forUser()],
  loopGuard: LoopGuard.of({ maxIterations: 25, maxCostUsd: 1, maxDuration: Duration.minutes(10), maxRepeats: 4 }),
  guardrails: Guardrails.defaults(),
  store: store(),
});

app.synth();
