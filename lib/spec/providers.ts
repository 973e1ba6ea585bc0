/**
 * LLM providers: which API shape each speaks and where it lives by default.
 */

/** The two wire APIs the runtime proxies and meters. */
export type ApiShape = 'openai' | 'anthropic';

export const PROVIDER_TYPES = ['openai', 'anthropic', 'azure-openai', 'openai-compatible'] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

/** The API shape a provider type speaks. */
export function apiShapeOf(type: ProviderType): ApiShape {
  return type === 'anthropic' ? 'anthropic' : 'openai';
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
};
