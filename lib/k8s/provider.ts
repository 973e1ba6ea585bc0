/**
 * LLM providers in priority order: requests fail over to the next provider of the same API
 * shape (or of the other shape, through `fallbackModel`).
 */
import type { INetworkPolicyPeer } from 'cdk8s-plus-28';
import { DEFAULT_BASE_URLS, type ProviderType, type SidecarConfigInput } from '../spec';
import { checkPort, parseEndpoint } from './network';
import type { SecretKey } from './secrets';

type ProviderConfigInput = SidecarConfigInput['providers'][number];

/** Options every provider takes. */
export interface LlmProviderOptions {
  /**
   * Unique name: the `provider` label of metrics, and the folder its key is mounted in.
   * @default - the provider type (openai, anthropic, azure-openai, openai-compatible)
   */
  readonly name?: string;
  /**
   * Model names rewritten before a request goes to this provider (requested -> served).
   * @default - none
   */
  readonly modelMap?: { readonly [requested: string]: string };
  /**
   * The model this provider serves requests of the other API shape with (an OpenAI request
   * failing over to Anthropic, or the reverse) when `modelMap` names none.
   * @default - it takes only requests of its own API shape
   */
  readonly fallbackModel?: string;
  /**
   * Extra static headers (not secrets: those go in `apiKey`).
   * @default - none
   */
  readonly headers?: { readonly [name: string]: string };
  /**
   * The pods or addresses behind the base URL, for the egress NetworkPolicy.
   * @default - derived from the URL: in-cluster names allow any pod on the port, other hosts the internet (private ranges excluded)
   */
  readonly peer?: INetworkPolicyPeer;
  /**
   * The port the provider's pods listen on, when a Service maps another port (NetworkPolicy sees pod ports).
   * @default - the URL's port
   */
  readonly targetPort?: number;
}

/** OpenAI or Anthropic. */
export interface HostedProviderOptions extends LlmProviderOptions {
  /** The provider key, mounted only into the runtime container. */
  readonly apiKey: SecretKey;
  /**
   * Base URL as the official SDK takes it.
   * @default https://api.openai.com/v1 (OpenAI), https://api.anthropic.com (Anthropic)
   */
  readonly baseUrl?: string;
}

/** Azure OpenAI. */
export interface AzureOpenAiProviderOptions extends LlmProviderOptions {
  /** The resource endpoint, https://NAME.openai.azure.com. */
  readonly endpoint: string;
  /** The resource key. */
  readonly apiKey: SecretKey;
  /**
   * The api-version of deployment-style URLs.
   * @default - the /openai/v1 API (no api-version)
   */
  readonly apiVersion?: string;
  /**
   * Model name to deployment name (needs `apiVersion`).
   * @default - the model name is the deployment name
   */
  readonly deployments?: { readonly [model: string]: string };
}

/** An OpenAI-compatible server (vLLM, Ollama, a proxy). */
export interface OpenAiCompatibleProviderOptions extends LlmProviderOptions {
  /** Base URL including /v1 (http://vllm.models.svc.cluster.local:8000/v1). */
  readonly baseUrl: string;
  /**
   * Its key, if it wants one.
   * @default - none (the agent's own Authorization header is forwarded)
   */
  readonly apiKey?: SecretKey;
}

/** An LLM provider the runtime calls. */
export class LlmProvider {
  /** OpenAI (Chat Completions). */
  public static openai(options: HostedProviderOptions): LlmProvider {
    return new LlmProvider('openai', options, options.baseUrl, options.apiKey);
  }

  /** Anthropic (Messages). */
  public static anthropic(options: HostedProviderOptions): LlmProvider {
    return new LlmProvider('anthropic', options, options.baseUrl, options.apiKey);
  }

  /** Azure OpenAI. */
  public static azureOpenAi(options: AzureOpenAiProviderOptions): LlmProvider {
    return new LlmProvider('azure-openai', options, options.endpoint, options.apiKey, {
      apiVersion: options.apiVersion,
      deployments: options.deployments,
    });
  }

  /** An OpenAI-compatible server. */
  public static openAiCompatible(options: OpenAiCompatibleProviderOptions): LlmProvider {
    return new LlmProvider('openai-compatible', options, options.baseUrl, options.apiKey);
  }

  /** Unique name among the construct's providers. */
  public readonly name: string;
  /** The base URL requests go to. */
  public readonly baseUrl: string;

  private constructor(
    /** The API the provider speaks. */
    public readonly type: ProviderType,
    private readonly options: LlmProviderOptions,
    baseUrl: string | undefined,
    /** Its key, if any. */
    public readonly apiKey: SecretKey | undefined,
    private readonly azure: Pick<AzureOpenAiProviderOptions, 'apiVersion' | 'deployments'> = {},
  ) {
    this.name = options.name ?? type;
    const what = `LlmProvider '${this.name}'`;
    if (!/^[a-z0-9]([a-z0-9-]{0,52}[a-z0-9])?$/.test(this.name)) {
      throw new Error(`${what}: 'name' must be lowercase letters, digits and '-', at most 54 characters (it names a volume).`);
    }
    this.baseUrl = baseUrl ?? DEFAULT_BASE_URLS[type]!;
    parseEndpoint(`${what}: the base URL`, this.baseUrl);
    if (options.targetPort !== undefined) checkPort(`${what}: 'targetPort'`, options.targetPort);
  }

  /** The pods or addresses behind the base URL, if declared. */
  public get peer(): INetworkPolicyPeer | undefined {
    return this.options.peer;
  }

  /** The pod port behind the base URL, if declared. */
  public get targetPort(): number | undefined {
    return this.options.targetPort;
  }

  /** @internal The runtime config entry; `apiKeyFile` is where the construct mounted the key. */
  public _toConfig(apiKeyFile: string | undefined): ProviderConfigInput {
    return {
      name: this.name,
      type: this.type,
      baseUrl: this.baseUrl,
      apiKey: apiKeyFile ? { file: apiKeyFile } : undefined,
      apiVersion: this.azure.apiVersion,
      deployments: this.azure.deployments ? { ...this.azure.deployments } : undefined,
      modelMap: this.options.modelMap ? { ...this.options.modelMap } : undefined,
      fallbackModel: this.options.fallbackModel,
      headers: this.options.headers ? { ...this.options.headers } : undefined,
    };
  }
}
