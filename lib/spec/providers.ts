/**
 * LLM providers: which API shape each speaks and where it lives by default.
 */

/** The two wire APIs the runtime proxies and meters. */
export type ApiShape = 'openai' | 'anthropic';

export const PROVIDER_TYPES = ['openai', 'anthropic', 'azure-openai', 'openai-compatible', 'cdk-agents-gateway'] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

/**
 * The API shape a provider type speaks natively. A cdk-agents gateway speaks both (it answers
 * each request in the shape it was sent in); 'openai' stands for it here.
 */
export function apiShapeOf(type: ProviderType): ApiShape {
  return type === 'anthropic' ? 'anthropic' : 'openai';
}

/** Whether a provider type takes requests of an API shape as they are (no translation). */
export function speaksNatively(type: ProviderType, shape: ApiShape): boolean {
  return type === 'cdk-agents-gateway' || apiShapeOf(type) === shape;
}

/**
 * Base URLs as the official SDKs take them: OpenAI's includes `/v1`, Anthropic's does not.
 * Azure OpenAI and OpenAI-compatible servers (vLLM, Ollama) have no default and must be given.
 */
export const DEFAULT_BASE_URLS: Partial<Record<ProviderType, string>> = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com',
};

/** The environment variable a provider's key is conventionally read from. */
export const CONVENTIONAL_KEY_ENV: Record<ProviderType, string> = {
  'openai': 'OPENAI_API_KEY',
  'anthropic': 'ANTHROPIC_API_KEY',
  'azure-openai': 'AZURE_OPENAI_API_KEY',
  'openai-compatible': 'OPENAI_COMPATIBLE_API_KEY',
  'cdk-agents-gateway': 'CDK_AGENTS_GATEWAY_KEY',
};
