/**
 * Tools the agent calls through its sidecar (POST http://127.0.0.1:8787/tools/{name}), which
 * forwards to the tool's endpoint, holds calls for approval, meters and audits them.
 */
import { Duration } from 'cdk8s';
import type { INetworkPolicyPeer } from 'cdk8s-plus-28';
import { ToolSchema, formatPath, type SidecarConfigInput } from '../spec';
import { checkPort } from './network';
import { RUNTIME_PROXY_PORT } from './runtime-container';

type ToolConfigInput = NonNullable<SidecarConfigInput['tools']>[number];

/** Options for `AgentTool.http`. */
export interface HttpToolOptions {
  /** The function name the model calls (1-64 of letters, digits, '_' and '-'). */
  readonly name: string;
  /** What the tool does, for the model. */
  readonly description: string;
  /** The arguments, as a JSON Schema object (`{ type: 'object', properties: {...}, required: [...] }`). */
  readonly parameters: { readonly [key: string]: any };
  /** Where the sidecar POSTs the arguments (http or https). */
  readonly endpoint: string;
  /**
   * Hold each call until an approver approves it (needs the agent's `approvals` token).
   * @default false
   */
  readonly requiresApproval?: boolean;
  /**
   * A call not approved or denied within this time expires and never runs.
   * @default Duration.hours(1)
   */
  readonly approvalTimeout?: Duration;
  /**
   * Timeout of one call to the endpoint.
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * The pods behind the endpoint, for the agent's egress NetworkPolicy (e.g. `Pods.select(...)`
   * or a `NetworkPolicyIpBlock` for a private address outside the cluster).
   * @default - in-cluster hosts (`svc`, `svc.cluster.local`, single-label names): any pod on
   * `targetPort`; other hosts: the internet (private ranges excluded)
   */
  readonly peer?: INetworkPolicyPeer;
  /**
   * The port the endpoint's pods listen on, when it differs from the URL's port (a Service
   * mapping 80 to 8080): NetworkPolicy sees pod ports, not Service ports.
   * @default - the URL's port
   */
  readonly targetPort?: number;
}

/** What the agent reads from /etc/agent/tools.json, one entry per tool. */
export interface ToolDefinition {
  readonly name: string;
  readonly description: string;
  readonly parameters: { readonly [key: string]: any };
  /** Where the agent calls it: its sidecar, never the endpoint itself. */
  readonly url: string;
  readonly requiresApproval: boolean;
}

/** A tool of an agent. */
export class AgentTool {
  /** A tool served by an HTTP endpoint. */
  public static http(options: HttpToolOptions): AgentTool {
    return new AgentTool(options);
  }

  /** The function name. */
  public readonly name: string;
  /** Where the sidecar forwards calls. */
  public readonly endpoint: string;
  /** Whether calls wait for an approver. */
  public readonly requiresApproval: boolean;

  private constructor(private readonly options: HttpToolOptions) {
    this.name = options.name;
    this.endpoint = options.endpoint;
    this.requiresApproval = options.requiresApproval ?? false;
    const what = `AgentTool '${options.name}'`;
    const parsed = ToolSchema.safeParse(this._toConfig());
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`${what}: '${formatPath(issue.path)}' ${issue.message}.`);
    }
    if (!options.description?.trim()) throw new Error(`${what}: 'description' is empty; the model picks tools by their description.`);
    const params = options.parameters as { type?: unknown } | undefined;
    if (!params || typeof params !== 'object' || Array.isArray(params) || params.type !== 'object') {
      throw new Error(`${what}: 'parameters' must be a JSON Schema object ({ type: 'object', properties: {...} }), as the LLM APIs require.`);
    }
    if (options.targetPort !== undefined) checkPort(`${what}: 'targetPort'`, options.targetPort);
  }

  /** The pods behind the endpoint, if declared. */
  public get peer(): INetworkPolicyPeer | undefined {
    return this.options.peer;
  }

  /** The pod port behind the endpoint, if declared. */
  public get targetPort(): number | undefined {
    return this.options.targetPort;
  }

  /** @internal The sidecar config entry. */
  public _toConfig(): ToolConfigInput {
    return {
      name: this.options.name,
      endpoint: this.options.endpoint,
      timeoutMs: this.options.timeout?.toMilliseconds(),
      requiresApproval: this.options.requiresApproval,
      approvalTtlMs: this.options.approvalTimeout?.toMilliseconds(),
    };
  }

  /** @internal The agent's view: name, description, schema, and the sidecar URL to call. */
  public _toDefinition(): ToolDefinition {
    return {
      name: this.options.name,
      description: this.options.description,
      parameters: this.options.parameters,
      url: `http://127.0.0.1:${RUNTIME_PROXY_PORT}/tools/${this.options.name}`,
      requiresApproval: this.requiresApproval,
    };
  }
}
