export * from './spec';
export * from './k8s';
// The constructs' classes win over the spec's types of the same name (those stay in 'cdk-agents/spec').
export { Budget, RateLimit, LoopGuard, GuardrailAction } from './k8s';
