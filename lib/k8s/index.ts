// The public API of the Kubernetes constructs; helpers shared between them stay internal.
export {
  AgentService,
  AGENT_CONFIG_DIR,
  AGENT_CONTAINER_NAME,
  PLACEHOLDER_API_KEY,
  SIDECAR_CONTAINER_NAME,
  type AgentServiceProps,
} from './agent-service';
export { LlmGateway, GATEWAY_CONTAINER_NAME, type LlmGatewayProps } from './llm-gateway';
export { AgentImage, type AgentImageOptions } from './image';
export { SystemPrompt } from './system-prompt';
export { AgentTool, type HttpToolOptions, type ToolDefinition } from './tool';
export {
  LlmProvider,
  type AzureOpenAiProviderOptions,
  type HostedProviderOptions,
  type LlmProviderOptions,
  type OpenAiCompatibleProviderOptions,
} from './provider';
export { ApproverToken, SecretKey, SecretStoreKind, SecretStoreRef } from './secrets';
export { AwsRole } from './aws-role';
export { AwsSecretStore, type AwsSecretStoreProps } from './aws-secret-store';
export { AgentPlatform, type AgentPlatformProps, type PlatformQueueOptions, type PlatformRedisOptions } from './agent-platform';
export { Budget, BudgetPeriod, BudgetScope, BudgetUnit, RateLimit, RateLimitUnit } from './budgets';
export { BudgetStore, StoreUnavailableBehavior, type RedisStoreOptions } from './budget-store';
export { LoopGuard, type LoopGuardOptions } from './loop-guard';
export { BudgetGuard, type BudgetGuardProps } from './budget-guard';
export { AgentAlerts, AlertSeverity, ALERT_NAMES, type AgentAlertsOptions, type AgentAlertsProps, type AlertRule, type AlertRuleGroup } from './alerts';
export { AgentMonitoring, JOB_LABEL, type AgentMonitoringProps } from './monitoring';
export { AgentDashboards, DASHBOARD_KEYS, dashboardUid, type AgentDashboardsProps } from './dashboards';
export { Guardrails, GuardrailAction, type DenyPattern, type GuardrailsOptions } from './guardrails';
export { GatewayCache, type GatewayCacheOptions } from './gateway-cache';
export { GatewaySigningKeys } from './signing-keys';
export {
  SidecarDelivery,
  BUNDLE_PATH_ENV,
  MAX_BUNDLE_CONFIGMAP_BYTES,
  NODE_IMAGE,
  type ConfigMapDeliveryOptions,
  type SidecarBundle,
} from './sidecar-delivery';
export { IN_FLIGHT_METRIC, type Autoscaling } from './scaling';
export { CHECKSUM_ANNOTATION } from './pod';
export { NON_INTERNET_RANGES, PRIVATE_EGRESS_ANNOTATION } from './network';
export {
  ADMIN_PORT_NAME,
  RUNTIME_ADMIN_PORT,
  RUNTIME_BUNDLE_DIR,
  RUNTIME_CONFIG_DIR,
  RUNTIME_PROXY_PORT,
  RUNTIME_SECRETS_DIR,
} from './runtime-container';
export {
  AGENT_POD_COMPONENTS,
  K8S_RULES,
  K8sRules,
  NON_INTERNET_RANGES_V6,
  POD_SECURITY_RULES,
  RuleContext,
  RuleLevel,
  checkManifests,
  formatFinding,
  type CheckManifestsOptions,
  type K8sFinding,
  type K8sRule,
  type K8sRulesOptions,
  type ManifestSuppression,
  type ObjectSelector,
  type RuleSuppression,
  type RuleViolation,
} from './rules';
export {
  QueueWorker,
  SidecarLifecycle,
  WorkerMode,
  WorkerQueue,
  WorkerQueueType,
  JOB_START_ALLOWANCE_SECONDS,
  WORKER_ENV_PREFIXES,
  type QueueWorkerProps,
  type RedisListOptions,
  type RedisQueueOptions,
  type RedisStreamOptions,
  type SqsQueueOptions,
} from './queue-worker';
export { WORKER_DONE_FILE } from './worker-lifecycle';
export {
  WarmPool,
  WarmPoolSize,
  PAUSE_IMAGE,
  PLACEHOLDER_PRIORITY,
  PLACEHOLDER_PRIORITY_CLASS,
  PREPULL_HELPER_IMAGE,
  type WarmPoolProps,
} from './warm-pool';
