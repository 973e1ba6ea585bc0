/**
 * cdk-agents/cloud: the AWS side of the platform (cdktf + @cdktf/provider-aws). A separate entry
 * point so `cdk-agents` never loads cdktf (archived upstream; it can move to its fork here alone).
 * Provider resources are imported by deep path: the provider's index is about 400 MB.
 */
export { AgentCloud, type AgentCloudProps } from './agent-cloud';
export { GeneratedSecret, type GeneratedSecretProps } from './generated-secret';
export { AgentRedis, type AgentRedisOptions, type AgentRedisProps } from './agent-redis';
export { type PolicyStatement } from './iam-policy';
export { PlatformKey, type PlatformKeyProps } from './platform-key';
export { PlatformMonitoring, type AlarmThresholds, type PlatformMonitoringProps } from './platform-monitoring';
export { ProviderKeyRotation, ProviderKeySecret, type LambdaRotationOptions, type ProviderKeySecretProps } from './provider-key-secret';
export { ServiceAccountRole, type ServiceAccountRoleProps } from './service-account-role';
export { SqsWorkerQueue, type SqsWorkerQueueProps } from './sqs-worker-queue';
export { CloudRules, type CloudFinding } from './rules/cloud-rules';
export { RuleLevel, type CloudRule } from './rules/aws-rules';
export { LOG_RETENTION_DAYS } from './validate';
export { crossReferenceProblems, type CrossReferenceOptions, type ExternalServiceAccount, type TerraformJson } from './cross-reference';
// The spec the constructs take, and the names both sides share.
export * from '../spec/platform';
