/**
 * The example platform spec: the one description both sides derive their shared names from
 * (ServiceAccounts, IAM role ARNs, queue URLs, secret names). examples/cloud.ts builds the AWS
 * side from it; the Kubernetes side reads the same names through platformNames(platform).
 */
import type { PlatformSpec } from '../lib/spec/platform';

export const platform: PlatformSpec = {
  name: 'acme-agents',
  // vpcCidr: the cluster's VPC, where the ElastiCache Redis has its private address.
  aws: { region: 'eu-central-1', accountId: '111122223333', vpcCidr: '10.0.0.0/16' },
  kubernetes: {
    namespace: 'agents',
    cluster: { oidcIssuerUrl: 'https://oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE' },
  },
  agents: [
    // The customer-support chat agent: calls providers through the gateway (the cloud side generates its
    // signing key), has tools that need approval (and so an approver token), hands long research to the worker.
    { name: 'support-chat', gateway: 'llm-gateway', approvals: true },
    // The central gateway holds the provider keys.
    { name: 'llm-gateway', providerKeys: ['openai', 'anthropic'] },
    // Background research jobs, taken from SQS (its Kubernetes side comes with the worker construct).
    { name: 'research-worker', gateway: 'llm-gateway' },
  ],
  workerQueues: [{ worker: 'research-worker', producers: ['support-chat'], visibilityTimeoutSeconds: 900, maxReceiveCount: 3 }],
  providerKeys: [
    { name: 'openai', description: 'OpenAI API key of the LLM gateway' },
    { name: 'anthropic', description: 'Anthropic API key of the LLM gateway' },
  ],
};
