// The Kubernetes rule pack: rules on plain manifests, applied to cdk8s apps or run on any objects.
export { K8sRules, type K8sRulesOptions } from './k8s-rules';
export { K8S_RULES, checkManifests, type CheckManifestsOptions, type ManifestSuppression, type ObjectSelector } from './pack';
export { POD_SECURITY_RULES } from './pod-security';
export { AGENT_POD_COMPONENTS } from './network-policy';
export { NON_INTERNET_RANGES_V6 } from './cidr';
export {
  RuleContext,
  RuleLevel,
  formatFinding,
  type K8sFinding,
  type K8sRule,
  type RuleSuppression,
  type RuleViolation,
} from './rule';
