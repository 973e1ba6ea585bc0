/**
 * AgentService: one agent on Kubernetes. The agent container runs the team's image with no
 * provider key; next to it the cdk-agents runtime (the sidecar) holds the keys or signs for the
 * gateway, and enforces budgets, guardrails and tool approvals. Emits the ServiceAccount,
 * ConfigMaps, Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler and a
 * default-deny NetworkPolicy, all named after the agent.
 */
import { Duration, Lazy, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';
import { Construct } from 'constructs';
import type { ExternalSecret } from '../imports/external-secrets.io_externalsecrets';
import type { SidecarConfig, SidecarConfigInput } from '../spec';
import { BudgetScope, isSharedScope, type Budget, type RateLimit } from './budgets';
import { bindAwsRole, type AwsRole } from './aws-role';
import { BudgetStore } from './budget-store';
import type { BudgetGuardGrant } from './budget-guard';
import { checkConfig, compact, setPath, type ConfigContext } from './config-check';
import { SecretBinder, type BoundSecret } from './external-secrets';
import type { Guardrails } from './guardrails';
import type { AgentImage } from './image';
import type { LlmGateway } from './llm-gateway';
import type { LoopGuard } from './loop-guard';
import { commonLabels, resolveName, resolveNamespace, selectorLabels } from './names';
import { checkPort, PolicyRules } from './network';
import { CHECKSUM_ANNOTATION, containerSecurityContext, kubeResources, podSecurityContext, sha256, tmpVolume, topologySpread } from './pod';
import type { LlmProvider } from './provider';
import {
  RUNTIME_ADMIN_PORT,
  RUNTIME_CONFIG_KEY,
  RUNTIME_PROXY_PORT,
  RUNTIME_SECRETS_DIR,
  RUNTIME_USER,
  SHUTDOWN_MARGIN_SECONDS,
  SecretMounts,
  runtimeContainer,
  waitUntilReady,
} from './runtime-container';
import { disruptionBudget, horizontalAutoscaler, minimumReplicas, resolveReplicas, type Autoscaling } from './scaling';
import { wireProvider, wireStore, type RuntimeWiring } from './runtime-wiring';
import { SecretKey, type ApproverToken, type SecretStoreRef } from './secrets';
import { SidecarDelivery, bundleConfigMap, type SidecarBundle } from './sidecar-delivery';
import type { SystemPrompt } from './system-prompt';
import type { AgentTool } from './tool';

/** The agent's container. */
export const AGENT_CONTAINER_NAME = 'agent';
/** The runtime's container next to it. */
export const SIDECAR_CONTAINER_NAME = 'cdk-agents-sidecar';
/** Where the agent reads its prompt (prompt.md) and tool definitions (tools.json). */
export const AGENT_CONFIG_DIR = '/etc/agent';
/**
 * The official SDKs refuse to start without an API key; the agent gets this stand-in, which the
 * sidecar drops (it injects the real key, or signs for the gateway). It is not a secret.
 */
export const PLACEHOLDER_API_KEY = 'unused-the-cdk-agents-sidecar-holds-the-key';

const COMPONENT = 'agent';
const DEFAULT_DRAIN = Duration.seconds(25);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Env the construct owns: the wiring to the sidecar. */
const RESERVED_ENV = ['AGENT_NAME', 'AGENT_MODEL', 'AGENT_PROMPT_FILE', 'AGENT_TOOLS_FILE', 'AGENT_TOOLS_URL', 'OPENAI_BASE_URL', 'ANTHROPIC_BASE_URL'];

const AGENT_RESOURCES: kplus.ContainerResources = {
  cpu: { request: kplus.Cpu.millis(250), limit: kplus.Cpu.units(1) },
  memory: { request: Size.mebibytes(512), limit: Size.gibibytes(1) },
};
/** The runtime measures about 80 MB RSS under full load with its Node flags. */
const SIDECAR_RESOURCES: kplus.ContainerResources = {
  cpu: { request: kplus.Cpu.millis(50), limit: kplus.Cpu.millis(500) },
  memory: { request: Size.mebibytes(64), limit: Size.mebibytes(192) },
};

/** Props of an AgentService. */
export interface AgentServiceProps {
  /**
   * The agent's name: names every object, labels metrics and audit records (a DNS label).
   * @default - derived from the construct id ('SupportChat' -> 'support-chat')
   */
  readonly name?: string;
  /**
   * The namespace of every emitted object.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /** The agent's image, pinned: `AgentImage.fromRegistry('ghcr.io/acme/support:1.4.2')`. */
  readonly image: AgentImage;
  /** The system prompt, mounted at /etc/agent/prompt.md (a ConfigMap: a prompt change is a reviewed diff). */
  readonly systemPrompt: SystemPrompt;
  /**
   * Tools, defined for the agent in /etc/agent/tools.json and called through the sidecar. More with `addTool()`.
   * @default - none
   */
  readonly tools?: AgentTool[];
  /**
   * The approvers' bearer token; required when a tool requires approval.
   * @default - no approvals API
   */
  readonly approvals?: ApproverToken;
  /**
   * The agent's default model, in env AGENT_MODEL.
   * @default - unset
   */
  readonly model?: string;
  /**
   * The agent's team: a metrics label and the scope of team budgets.
   * @default - none
   */
  readonly team?: string;
  /**
   * Reach LLMs through this gateway (it holds the provider keys), as `gateway.connect(agent)` does.
   * Exactly one of `gateway` and `providers`.
   * @default - none
   */
  readonly gateway?: LlmGateway;
  /**
   * Reach LLMs directly, in priority order; the keys are mounted only into the sidecar.
   * Exactly one of `gateway` and `providers`.
   * @default - none
   */
  readonly providers?: LlmProvider[];
  /**
   * The agent container's resources; fields left out keep their defaults.
   * @default - requests cpu 250m, memory 512Mi; limits cpu 1, memory 1Gi (a runaway agent hits a wall)
   */
  readonly resources?: kplus.ContainerResources;
  /**
   * The sidecar's resources; fields left out keep their defaults.
   * @default - requests cpu 50m, memory 64Mi; limits cpu 500m, memory 192Mi
   */
  readonly sidecarResources?: kplus.ContainerResources;
  /**
   * Pods, when not autoscaled.
   * @default 2
   */
  readonly replicas?: number;
  /**
   * A HorizontalPodAutoscaler instead of a fixed replica count.
   * @default - fixed `replicas`
   */
  readonly autoscaling?: Autoscaling;
  /**
   * Plain environment variables of the agent container. `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`
   * may be set (they replace the placeholder) but the sidecar drops them toward providers it holds keys for.
   * @default - none
   */
  readonly env?: { readonly [name: string]: string };
  /**
   * The agent's own secrets as environment variables (never provider keys: those go in `providers`).
   * @default - none
   */
  readonly secretEnv?: { readonly [name: string]: SecretKey };
  /**
   * The agent's own HTTP port for callers. When set: a Service and probes on it.
   * @default - no port, no Service, no probes on the agent container
   */
  readonly port?: number;
  /**
   * HTTP path for the agent's readiness and liveness probes (needs `port`).
   * @default - a TCP check on `port`
   */
  readonly healthPath?: string;
  /**
   * The agent container's command.
   * @default - the image's ENTRYPOINT
   */
  readonly command?: string[];
  /**
   * The agent container's arguments.
   * @default - the image's CMD
   */
  readonly args?: string[];
  /**
   * A command the agent container runs before it gets SIGTERM (e.g. to stop taking new runs).
   * @default - none
   */
  readonly preStopCommand?: string[];
  /**
   * The agent container's user id.
   * @default 1000
   */
  readonly runAsUser?: number;
  /**
   * The agent container's group id.
   * @default 1000
   */
  readonly runAsGroup?: number;
  /**
   * Size limit of the agent's writable /tmp (the root filesystem is read-only).
   * @default Size.mebibytes(256)
   */
  readonly tmpSizeLimit?: Size;
  /**
   * Spending caps, enforced by the sidecar. More with `addBudget()`.
   * @default - none
   */
  readonly budgets?: Budget[];
  /**
   * Rate limits. More with `addRateLimit()`.
   * @default - none
   */
  readonly rateLimits?: RateLimit[];
  /**
   * Guards per agent run.
   * @default - none
   */
  readonly loopGuard?: LoopGuard;
  /**
   * Input and output guardrails.
   * @default Guardrails.defaults()
   */
  readonly guardrails?: Guardrails;
  /**
   * Where budgets, rate limits, run state and pending approvals live.
   * @default BudgetStore.memory()
   */
  readonly store?: BudgetStore;
  /**
   * Accept that budgets and rate limits of a shared scope (agent, user, team) are kept per pod
   * with the memory store, so the effective cap is multiplied by the replica count.
   * @default false (such a budget without Redis is an error)
   */
  readonly acceptPerReplicaBudgets?: boolean;
  /**
   * Who may call the agent's `port` (Pods.select(...), Namespaces.select(...), another AgentService). More with `allowFrom()`.
   * @default - nobody
   */
  readonly callers?: kplus.INetworkPolicyPeer[];
  /**
   * Who may reach the sidecar's admin port 8788 (Prometheus, approvers). More with `allowAdminFrom()`.
   * @default - nobody
   */
  readonly adminAccessFrom?: kplus.INetworkPolicyPeer[];
  /**
   * How the runtime gets into the pod.
   * @default SidecarDelivery.configMap()
   */
  readonly sidecar?: SidecarDelivery;
  /**
   * Mount a Kubernetes API token (only for agents that call the API, with a Role bound to `serviceAccount`).
   * @default false
   */
  readonly serviceAccountToken?: boolean;
  /**
   * The External Secrets store for `SecretKey.fromAwsSecretsManager` references.
   * @default - none (AWS references are an error)
   */
  readonly secretStore?: SecretStoreRef;
  /**
   * The IAM role the pods assume (IRSA): the ServiceAccount gets the `eks.amazonaws.com/role-arn`
   * annotation, and egress opens HTTPS to public addresses (STS and the AWS APIs).
   * `AgentPlatform.roleOf(agent)` derives it from the platform spec.
   * @default - no role: the pods get no AWS credentials from their ServiceAccount
   */
  readonly awsRole?: AwsRole;
  /**
   * How long the sidecar lets in-flight LLM and tool calls finish after SIGTERM.
   * @default Duration.seconds(25)
   */
  readonly drainTimeout?: Duration;
  /**
   * The pod's termination grace period; must exceed `drainTimeout`.
   * @default - drainTimeout plus 10 seconds
   */
  readonly terminationGracePeriod?: Duration;
  /**
   * Secrets for pulling the images from a private registry.
   * @default - none
   */
  readonly imagePullSecrets?: string[];
}

/** @internal What a gateway hands an agent it connects. */
export interface GatewayConnection {
  readonly gateway: LlmGateway;
  readonly gatewayName: string;
  readonly baseUrl: string;
  readonly namespace?: string;
  /** The Secret holding one key per agent, in the gateway's namespace. */
  readonly signingSecretName: string;
  /** Set when the keys come from AWS Secrets Manager. */
  readonly signingAwsSecretId?: string;
}

/**
 * @internal How a subclass runs the agent's pods instead of a fixed count or an HPA: a queue
 * worker whose replica count KEDA owns, or whose pods are Jobs.
 */
export interface AgentWorkload {
  /** The construct kind, in errors: "QueueWorker". */
  readonly kind: string;
  /** Fewest pods (a PodDisruptionBudget from 2). */
  readonly minPods: number;
  /** Most pods at once (the shared-budget check). */
  readonly maxPods: number;
  /** "up to 10 replicas", in errors. */
  readonly describePods: string;
  /** Emit the Deployment, without `replicas` (the scaler owns them); false: the pod template goes into a ScaledJob. */
  readonly deployment: boolean;
  /** Each task runs in a fresh pod, so per-pod counters start at zero for every task. */
  readonly podPerTask: boolean;
  /** The longest task, in seconds: the grace period lets a terminating pod finish it before the sidecar drains. */
  readonly taskSeconds: number;
}

interface BoundProvider {
  readonly provider: LlmProvider;
  readonly keyFile?: string;
}

/** One agent: its Deployment with the cdk-agents sidecar, and everything around it. */
export class AgentService extends Construct implements kplus.IPodSelector, kplus.INetworkPolicyPeer {
  /** The agent's name (a DNS label). */
  public readonly name: string;
  /** The namespace of every emitted object, when known at synth. */
  public readonly namespace?: string;
  /** The labels the Deployment selects its pods by. */
  public readonly selectorLabels: Record<string, string>;
  /** The pods' ServiceAccount (no API token unless `serviceAccountToken`). */
  public readonly serviceAccount: kplus.ServiceAccount;
  /** prompt.md and tools.json, mounted read-only into the agent container. */
  public readonly promptConfigMap: kplus.ConfigMap;
  /** The validated runtime config (sidecar.json). */
  public readonly sidecarConfigMap: kplus.ConfigMap;
  /** The runtime bundle, with `SidecarDelivery.configMap()`. */
  public readonly sidecarBundleConfigMap?: kplus.ConfigMap;
  /** The Service on the agent's port, when `port` is set. */
  public readonly service?: kplus.Service;
  /** The default-deny NetworkPolicy selecting the agent's pods. */
  public readonly networkPolicy: kplus.NetworkPolicy;
  /** The HorizontalPodAutoscaler, with `autoscaling`. */
  public readonly autoscaler?: k8s.KubeHorizontalPodAutoscalerV2;
  /** The agent's port, if any. */
  public readonly port?: number;
  /** The agent's team, if any. */
  public readonly team?: string;

  private readonly owner: string;
  private readonly labels: Record<string, string>;
  private readonly props: AgentServiceProps;
  private readonly replicas?: number;
  private readonly maxPods: number;
  private readonly worker?: AgentWorkload;
  private readonly _deployment?: k8s.KubeDeployment;
  private _podDisruptionBudget?: k8s.KubePodDisruptionBudget;
  /** Pods a WarmPool keeps ready above the autoscaler's floor. */
  private readyBuffer = 0;
  private store: BudgetStore;
  private readonly delivery: SidecarDelivery;
  private readonly bundle?: SidecarBundle;
  private readonly drainSeconds: number;
  private readonly gracePeriodSeconds: number;
  private readonly agentResources: k8s.ResourceRequirements;
  private readonly sidecarResources: k8s.ResourceRequirements;
  /** The NetworkPolicy's rules (subclasses open what they add, once). */
  protected readonly rules: PolicyRules;
  private readonly sidecarSecrets: SecretBinder;
  private readonly agentSecrets: SecretBinder;
  private readonly sidecarMounts = new SecretMounts();
  private readonly _providers: BoundProvider[] = [];
  private readonly _tools: AgentTool[] = [];
  private readonly _budgets: Budget[] = [];
  private readonly _rateLimits: RateLimit[] = [];
  private readonly env = new Map<string, string>();
  private readonly secretEnv = new Map<string, BoundSecret>();
  private readonly overrides = new Map<string, unknown>();
  private readonly wiring: RuntimeWiring;
  private storeConfig: NonNullable<SidecarConfigInput['store']>;
  /** The loop guard of an attached BudgetGuard. */
  private guardLoopGuard?: LoopGuard;
  private approvalsFile?: string;
  private connection?: GatewayConnection;
  private signingKeyFile?: string;
  private constructed = false;

  /**
   * @param worker @internal set by subclasses (QueueWorker) whose pods a scaler or Jobs run
   */
  constructor(scope: Construct, id: string, props: AgentServiceProps, worker?: AgentWorkload) {
    super(scope, id);
    this.props = props;
    this.worker = worker;
    const kind = worker?.kind ?? 'AgentService';
    this.name = resolveName(kind, id, props.name);
    this.owner = `${kind} '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    this.selectorLabels = selectorLabels(this.name, COMPONENT);
    this.labels = commonLabels(this.name, COMPONENT);
    this.team = props.team;
    this.port = props.port;
    this.store = props.store ?? BudgetStore.memory();
    this.delivery = props.sidecar ?? SidecarDelivery.configMap();

    if (props.gateway && props.providers?.length) {
      throw new Error(
        `${this.owner}: 'gateway' and 'providers' are both set. The agent reaches LLMs either through the gateway (which holds the keys) or directly with its own providers: remove one.`,
      );
    }
    this.replicas = worker ? undefined : resolveReplicas(this.owner, props.replicas, props.autoscaling, 2);
    this.maxPods = worker ? worker.maxPods : props.autoscaling ? props.autoscaling.maxReplicas : this.replicas!;
    if (props.port !== undefined) checkPort(`${this.owner}: 'port'`, props.port);
    if (props.port === RUNTIME_PROXY_PORT || props.port === RUNTIME_ADMIN_PORT) {
      throw new Error(`${this.owner}: 'port' (${props.port}) is the sidecar's; pick another port for the agent.`);
    }
    if (props.healthPath !== undefined && props.port === undefined) throw new Error(`${this.owner}: 'healthPath' needs 'port' (the probes call it).`);
    if (props.healthPath !== undefined && !props.healthPath.startsWith('/')) throw new Error(`${this.owner}: 'healthPath' ('${props.healthPath}') must start with '/'.`);
    this.drainSeconds = Math.ceil((props.drainTimeout ?? DEFAULT_DRAIN).toSeconds({ integral: false }));
    if (this.drainSeconds < 1) throw new Error(`${this.owner}: 'drainTimeout' must be at least 1 second.`);
    const taskSeconds = worker?.taskSeconds ?? 0;
    this.gracePeriodSeconds = props.terminationGracePeriod?.toSeconds() ?? taskSeconds + this.drainSeconds + SHUTDOWN_MARGIN_SECONDS;
    if (this.gracePeriodSeconds <= taskSeconds + this.drainSeconds) {
      const floor = taskSeconds ? `'maxTaskDuration' plus 'drainTimeout' (${taskSeconds}s + ${this.drainSeconds}s)` : `'drainTimeout' (${this.drainSeconds}s)`;
      throw new Error(
        `${this.owner}: 'terminationGracePeriod' (${this.gracePeriodSeconds}s) must exceed ${floor}, or in-flight calls are killed mid-drain. Raise it to ${taskSeconds + this.drainSeconds + SHUTDOWN_MARGIN_SECONDS}s or more.`,
      );
    }
    this.agentResources = kubeResources('resources', props.resources, AGENT_RESOURCES);
    this.sidecarResources = kubeResources('sidecarResources', props.sidecarResources, SIDECAR_RESOURCES);
    if (this.delivery.bundled) {
      try {
        this.bundle = this.delivery._loadBundle();
      } catch (err) {
        throw new Error(`${this.owner}: ${(err as Error).message}`);
      }
    }

    const metadata = (name: string) => ({ name, namespace: this.namespace, labels: this.labels });
    const binder = (id: string, secretName: string) =>
      new SecretBinder({ scope: this, id, secretName, namespace: this.namespace, labels: this.labels, store: props.secretStore, owner: this.owner });
    this.sidecarSecrets = binder('SidecarSecrets', `${this.name}-sidecar-secrets`);
    this.agentSecrets = binder('AgentSecrets', `${this.name}-agent-secrets`);

    this.serviceAccount = new kplus.ServiceAccount(this, 'ServiceAccount', {
      metadata: metadata(this.name),
      automountToken: props.serviceAccountToken ?? false,
    });
    this.promptConfigMap = new kplus.ConfigMap(this, 'Prompt', {
      metadata: metadata(`${this.name}-prompt`),
      data: { 'prompt.md': props.systemPrompt.text, 'tools.json': Lazy.any({ produce: () => this.toolsJson() }) },
    });
    this.sidecarConfigMap = new kplus.ConfigMap(this, 'SidecarConfig', {
      metadata: metadata(`${this.name}-sidecar-config`),
      data: { [RUNTIME_CONFIG_KEY]: Lazy.any({ produce: () => this.configJson() }) },
    });
    if (this.bundle) {
      this.sidecarBundleConfigMap = bundleConfigMap(this, 'SidecarBundle', metadata(`${this.name}-sidecar-bundle`), this.bundle, this.owner);
    }
    this.networkPolicy = new kplus.NetworkPolicy(this, 'NetworkPolicy', {
      metadata: metadata(this.name),
      selector: this,
      ingress: { default: kplus.NetworkPolicyTrafficDefault.DENY },
      egress: { default: kplus.NetworkPolicyTrafficDefault.DENY },
    });
    this.rules = new PolicyRules(this.networkPolicy);
    this.rules.allowDns();
    // The AWS SDK exchanges the pod's token at STS, then calls the service endpoints: HTTPS, public addresses.
    if (bindAwsRole(this.owner, 'awsRole', this.serviceAccount, props.awsRole)) this.rules.allowInternet(443);
    this.wiring = { owner: this.owner, secrets: this.sidecarSecrets, mounts: this.sidecarMounts, rules: this.rules };

    if (!worker || worker.deployment) {
      this._deployment = new k8s.KubeDeployment(this, 'Resource', {
        metadata: metadata(this.name),
        spec: Lazy.any({ produce: () => this.deploymentSpec() }),
      });
    }
    if (props.port !== undefined) {
      this.service = new kplus.Service(this, 'Service', {
        metadata: metadata(this.name),
        selector: this,
        ports: [{ name: 'http', port: props.port, targetPort: props.port }],
      });
    }
    const workload = { name: this.name, namespace: this.namespace, labels: this.labels, selector: this.selectorLabels };
    const minPods = worker ? (worker.deployment ? worker.minPods : 0) : minimumReplicas(this.replicas, props.autoscaling);
    if (minPods >= 2) this._podDisruptionBudget = disruptionBudget(this, 'DisruptionBudget', workload);
    if (props.autoscaling) {
      const floor = props.autoscaling.minReplicas;
      const minReplicas: number = Lazy.any({ produce: () => floor + this.readyBuffer });
      this.autoscaler = horizontalAutoscaler(this, 'Autoscaler', workload, { ...props.autoscaling, minReplicas });
    }

    this.storeConfig = wireStore(this.wiring, this.store);
    if (props.approvals) {
      const token = this.sidecarSecrets.bind(props.approvals.secretKey, 'approver-token', 'approvals');
      this.approvalsFile = this.sidecarMounts.add('approver-token', `${RUNTIME_SECRETS_DIR}/approvals`, 'token', token);
    }
    for (const provider of props.providers ?? []) this.addProvider(provider);
    for (const tool of props.tools ?? []) this.addTool(tool);
    for (const budget of props.budgets ?? []) this.addBudget(budget);
    for (const limit of props.rateLimits ?? []) this.addRateLimit(limit);
    for (const [name, value] of Object.entries(props.env ?? {})) this.addEnv(name, value);
    for (const [name, key] of Object.entries(props.secretEnv ?? {})) this.addSecretEnv(name, key);
    for (const peer of props.callers ?? []) this.allowFrom(peer);
    for (const peer of props.adminAccessFrom ?? []) this.allowAdminFrom(peer);
    props.gateway?.connect(this);

    this.constructed = true;
    this.checkNow();
    this.node.addValidation({ validate: () => this.validateAtSynth() });
  }

  /** The Deployment (the construct's default child, id 'Resource'). A QueueWorker in Job mode has none: its pods are Jobs. */
  public get deployment(): k8s.KubeDeployment {
    if (!this._deployment) throw new Error(`${this.owner} has no Deployment: its pods run as Jobs of a KEDA ScaledJob.`);
    return this._deployment;
  }

  /** maxUnavailable 1, when at least 2 pods run. */
  public get podDisruptionBudget(): k8s.KubePodDisruptionBudget | undefined {
    return this._podDisruptionBudget;
  }

  /** @internal The most pods that run at once (a WarmPool's bound). */
  public get _maxReplicas(): number {
    return this.maxPods;
  }

  /**
   * @internal A WarmPool's ready buffer: the HPA keeps `replicas` more pods than its
   * `minReplicas`. `pool` names the WarmPool in errors.
   */
  public _addReadyBuffer(replicas: number, pool: string): void {
    const a = this.props.autoscaling;
    if (!a) {
      throw new Error(
        `${pool}: 'readyBuffer' needs an autoscaled agent, but ${this.owner} runs a fixed 'replicas' (${this.replicas}). ` +
          `Raise 'replicas' instead, or give the agent 'autoscaling'.`,
      );
    }
    if (this.readyBuffer) throw new Error(`${pool}: ${this.owner} already has a ready buffer from another WarmPool; give it one WarmPool.`);
    if (a.minReplicas + replicas > a.maxReplicas) {
      throw new Error(
        `${pool}: 'readyBuffer' (${replicas}) plus the agent's 'autoscaling.minReplicas' (${a.minReplicas}) is ${a.minReplicas + replicas}, ` +
          `above its 'autoscaling.maxReplicas' (${a.maxReplicas}). Lower readyBuffer or raise autoscaling.maxReplicas.`,
      );
    }
    this.readyBuffer = replicas;
    if (a.minReplicas + replicas >= 2) this.addDisruptionBudget();
  }

  /** @internal The pod: its template as the Deployment (or a ScaledJob) runs it. */
  public _podTemplate(): k8s.PodTemplateSpec {
    return this.podTemplate();
  }

  /** The gateway the agent reaches LLMs through, once connected. */
  public get gateway(): LlmGateway | undefined {
    return this.connection?.gateway;
  }

  /** Its direct providers, in priority order. */
  public get providers(): LlmProvider[] {
    return this._providers.map((p) => p.provider);
  }

  /** Its tools. */
  public get tools(): AgentTool[] {
    return [...this._tools];
  }

  /** Its budgets. */
  public get budgets(): Budget[] {
    return [...this._budgets];
  }

  /** Its rate limits. */
  public get rateLimits(): RateLimit[] {
    return [...this._rateLimits];
  }

  /** Its loop guard (the prop, or an attached BudgetGuard's), if any. */
  public get loopGuard(): LoopGuard | undefined {
    return this.props.loopGuard ?? this.guardLoopGuard;
  }

  /** Where its budgets, rate limits, run state and pending approvals live. */
  public get budgetStore(): BudgetStore {
    return this.store;
  }

  /** The ExternalSecret of the sidecar's AWS-sourced secrets, if any. */
  public get sidecarExternalSecret(): ExternalSecret | undefined {
    return this.sidecarSecrets.externalSecret;
  }

  /** The ExternalSecret of the agent's AWS-sourced `secretEnv`, if any. */
  public get agentExternalSecret(): ExternalSecret | undefined {
    return this.agentSecrets.externalSecret;
  }

  /** Adds a direct provider (after those in `providers`). Not with a gateway. */
  public addProvider(provider: LlmProvider): void {
    if (this.connection) {
      throw new Error(
        `${this.owner}: cannot add provider '${provider.name}': the agent reaches LLMs through gateway '${this.connection.gatewayName}', which holds the providers. Add it to the gateway instead.`,
      );
    }
    if (this._providers.some((p) => p.provider.name === provider.name)) {
      throw new Error(`${this.owner}: two providers are named '${provider.name}'; give one a distinct 'name'.`);
    }
    this._providers.push({ provider, keyFile: wireProvider(this.wiring, provider) });
    this.checkNow();
  }

  /** Adds a tool: its definition for the agent, its sidecar route, and egress to its endpoint. */
  public addTool(tool: AgentTool): void {
    const clash = this._tools.find((t) => t.name === tool.name);
    if (clash) {
      throw new Error(
        `${this.owner}: two tools are named '${tool.name}' (endpoints ${clash.endpoint} and ${tool.endpoint}); the model calls tools by name, so names must be unique. Rename one.`,
      );
    }
    if (tool.requiresApproval && !this.props.approvals) {
      throw new Error(
        `${this.owner}: tool '${tool.name}' requires approval, so 'approvals' must be set: ApproverToken.fromSecret(secretName, key) (the approvers' bearer token).`,
      );
    }
    this._tools.push(tool);
    this.rules.allowEndpoint(`${this.owner}: tool '${tool.name}' endpoint`, tool.endpoint, tool.peer, tool.targetPort);
    this.checkNow();
  }

  /** Adds a budget. A shared scope on more than one pod needs a Redis store (or `acceptPerReplicaBudgets`). */
  public addBudget(budget: Budget): void {
    this.checkScope(budget.scope, `budget ${budget}`);
    this._budgets.push(budget);
    this.checkNow();
  }

  /** Adds a rate limit; same store rule as budgets. */
  public addRateLimit(limit: RateLimit): void {
    this.checkScope(limit.scope, `rate limit ${limit}`);
    this._rateLimits.push(limit);
    this.checkNow();
  }

  /** Sets a plain environment variable of the agent container. */
  public addEnv(name: string, value: string): void {
    this.checkEnvName(name);
    this.env.set(name, value);
  }

  /** Sets an environment variable of the agent container from a secret (the agent's own, never a provider key). */
  public addSecretEnv(name: string, secret: SecretKey): void {
    this.checkEnvName(name);
    this.secretEnv.set(name, this.agentSecrets.bind(secret, name, `secretEnv.${name}`));
  }

  /** Lets `peer` call the agent's port. An AgentService peer also gets the egress to it. */
  public allowFrom(peer: kplus.INetworkPolicyPeer): void {
    if (this.port === undefined) throw new Error(`${this.owner}: allowFrom() needs 'port': the agent has no port for callers.`);
    this.rules.allowIngress(peer, this.port);
    if (peer instanceof AgentService) peer.rules.allowEgress(this, this.port);
  }

  /** Lets `peer` reach the sidecar's admin port 8788 (/metrics, /healthz, /readyz, the approvals API). */
  public allowAdminFrom(peer: kplus.INetworkPolicyPeer): void {
    this.rules.allowIngress(peer, RUNTIME_ADMIN_PORT);
  }

  /**
   * Sets a runtime config field the props do not cover (`timeouts.firstByteMs`, `audit.captureContent`,
   * `prices`), by dotted path. Validated like the rest.
   */
  public addConfigOverride(path: string, value: unknown): void {
    this.overrides.set(path, value);
    this.checkNow();
  }

  /** The runtime config as the sidecar will read it, every default filled in. */
  public renderSidecarConfig(): SidecarConfig {
    const problem = this.missingLlmAccess();
    if (problem) throw new Error(problem);
    return checkConfig(this.configInput(), this.configContext())!;
  }

  /** @see kplus.IPodSelector */
  public toPodSelectorConfig(): kplus.PodSelectorConfig {
    return {
      labelSelector: kplus.LabelSelector.of({ labels: this.selectorLabels }),
      namespaces: this.namespace ? { names: [this.namespace] } : undefined,
    };
  }

  /** @see kplus.INetworkPolicyPeer */
  public toNetworkPolicyPeerConfig(): kplus.NetworkPolicyPeerConfig {
    return { podSelector: this.toPodSelectorConfig() };
  }

  /** @see kplus.INetworkPolicyPeer */
  public toPodSelector(): kplus.IPodSelector {
    return this;
  }

  /** @internal Called by `LlmGateway.connect()`. */
  public _connectGateway(connection: GatewayConnection): void {
    if (this.connection) {
      if (this.connection.gateway === connection.gateway) return;
      throw new Error(`${this.owner}: already connected to gateway '${this.connection.gatewayName}'; an agent uses one gateway.`);
    }
    if (this._providers.length) {
      throw new Error(
        `${this.owner}: 'gateway' (${connection.gatewayName}) and 'providers' are both set. The agent reaches LLMs either through the gateway (which holds the keys) or directly: remove one.`,
      );
    }
    this.connection = connection;
    // Same namespace: mount this agent's item of the gateway's Secret. Elsewhere: a Secret of that
    // name in this namespace, or this agent's own ExternalSecret of only its key.
    let key: BoundSecret = { secretName: connection.signingSecretName, key: this.name };
    if (connection.signingAwsSecretId && connection.namespace !== this.namespace) {
      key = this.sidecarSecrets.bind(SecretKey.fromAwsSecretsManager(connection.signingAwsSecretId, this.name), 'gateway-signing-key', 'gateway');
    }
    this.signingKeyFile = this.sidecarMounts.add('signing-key', `${RUNTIME_SECRETS_DIR}/signing-key`, 'key', key);
    this.rules.allowEgress(connection.gateway, RUNTIME_PROXY_PORT);
    this.checkNow();
  }

  /** A PodDisruptionBudget, once at least 2 pods run (a WarmPool's buffer can make it so). */
  protected addDisruptionBudget(): void {
    this._podDisruptionBudget ??= disruptionBudget(this, 'DisruptionBudget', { name: this.name, namespace: this.namespace, labels: this.labels, selector: this.selectorLabels });
  }

  /** The Secret key behind an env var set from a secret (`addSecretEnv`), once bound. */
  protected secretEnvRef(name: string): BoundSecret | undefined {
    return this.secretEnv.get(name);
  }

  /**
   * @internal Called by `BudgetGuard.attach()`: the guard's limits join the agent's own, checked the
   * same way (with the guard's store and acceptance), then its store and loop guard if it brings them.
   */
  public _attachBudgetGuard(grant: BudgetGuardGrant): void {
    const store = grant.store && !this.store.isShared ? grant.store : this.store;
    const via = { store, accept: grant.acceptPerReplicaBudgets, owner: grant.owner };
    for (const b of grant.budgets) this.checkScope(b.scope, `budget ${b} of ${grant.owner}`, via);
    for (const r of grant.rateLimits) this.checkScope(r.scope, `rate limit ${r} of ${grant.owner}`, via);
    if (grant.loopGuard && !this.props.loopGuard) this.checkScope(BudgetScope.RUN, `loop guard of ${grant.owner}`, via);
    if (store !== this.store) {
      this.store = store;
      this.storeConfig = wireStore(this.wiring, store);
    }
    if (grant.loopGuard && !this.props.loopGuard) this.guardLoopGuard = grant.loopGuard;
    this._budgets.push(...grant.budgets);
    this._rateLimits.push(...grant.rateLimits);
    this.checkNow();
  }

  /** `via`: a BudgetGuard's limits, checked with its store and acceptance, and the fix named on it. */
  private checkScope(scope: BudgetScope, what: string, via?: { store: BudgetStore; accept: boolean; owner: string }): void {
    if (scope === BudgetScope.TEAM && !this.team) throw new Error(`${this.owner}: the ${what} is kept for the team, so 'team' must be set.`);
    if (!isSharedScope(scope) || (via?.store ?? this.store).isShared || this.props.acceptPerReplicaBudgets || via?.accept) return;
    const on = via ? ` on ${via.owner}` : '';
    if (this.worker?.podPerTask) {
      throw new Error(
        `${this.owner}: the ${what} is shared by every task, but each task runs in a new pod whose memory store starts at zero, so the cap would hold per task only. ` +
          `Set 'store: BudgetStore.redis({ url, passwordSecret })'${on} to share it, or 'acceptPerReplicaBudgets: true'${on} if a per-task limit is intended.`,
      );
    }
    if (this.maxPods < 2) return;
    const pods = this.worker?.describePods ?? (this.props.autoscaling ? `up to ${this.maxPods} replicas` : `${this.maxPods} replicas`);
    throw new Error(
      `${this.owner}: the ${what} is shared by every pod, but with ${pods} and the memory store each pod keeps its own count, so the real cap is ${this.maxPods}x. ` +
        `Set 'store: BudgetStore.redis({ url, passwordSecret })'${on} to share it, or 'acceptPerReplicaBudgets: true'${on} if per-pod limits are intended.`,
    );
  }

  private checkEnvName(name: string): void {
    if (!ENV_NAME.test(name)) throw new Error(`${this.owner}: '${name}' is not a valid environment variable name.`);
    if (RESERVED_ENV.includes(name)) throw new Error(`${this.owner}: env '${name}' is set by the construct (it wires the agent to its sidecar); remove it.`);
    if (this.env.has(name) || this.secretEnv.has(name)) throw new Error(`${this.owner}: env '${name}' is set twice (in 'env' and 'secretEnv', or added twice).`);
  }

  private missingLlmAccess(): string | undefined {
    if (this.connection || this._providers.length) return undefined;
    return (
      `${this.owner}: set 'gateway' (or call gateway.connect(agent)) or 'providers': the agent has no way to reach an LLM. ` +
      `A gateway holds the provider keys centrally; providers put them in this agent's sidecar.`
    );
  }

  /** Validates as soon as the config is complete enough; before that, at synth. */
  private checkNow(): void {
    if (this.constructed && !this.missingLlmAccess()) checkConfig(this.configInput(), this.configContext());
  }

  private validateAtSynth(): string[] {
    const missing = this.missingLlmAccess();
    if (missing) return [missing];
    try {
      checkConfig(this.configInput(), this.configContext());
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  }

  private configContext(): ConfigContext {
    return {
      owner: this.owner,
      providerNames: this._providers.map((p) => p.provider.name),
      toolNames: this._tools.map((t) => t.name),
      agentNames: [],
      overrides: [...this.overrides.keys()],
      gatewayName: this.connection?.gatewayName,
    };
  }

  private configInput(): SidecarConfigInput {
    const providers: SidecarConfigInput['providers'] = this.connection
      ? [{ name: this.connection.gatewayName, type: 'cdk-agents-gateway', baseUrl: this.connection.baseUrl, signingKey: { file: this.signingKeyFile! } }]
      : this._providers.map((p) => p.provider._toConfig(p.keyFile));
    const input: Record<string, unknown> = {
      version: 1,
      mode: 'sidecar',
      agent: { name: this.name, team: this.team },
      // Loopback: only containers of this pod reach the proxy; the admin side is for probes, scrapes and approvers.
      listen: { host: '127.0.0.1', port: RUNTIME_PROXY_PORT },
      admin: { host: '0.0.0.0', port: RUNTIME_ADMIN_PORT },
      providers,
      budgets: this._budgets.map((b) => b._toConfig()),
      rateLimits: this._rateLimits.map((r) => r._toConfig()),
      loopGuard: this.loopGuard?._toConfig(),
      store: this.storeConfig,
      guardrails: this.props.guardrails?._toConfig(),
      tools: this._tools.map((t) => t._toConfig()),
      approvals: this.approvalsFile ? { token: { file: this.approvalsFile } } : undefined,
      shutdown: { drainMs: this.drainSeconds * 1000 },
    };
    for (const [path, value] of this.overrides) setPath(input, path, value);
    return compact(input) as SidecarConfigInput;
  }

  private configJson(): string {
    return `${JSON.stringify(this.renderSidecarConfig(), null, 2)}\n`;
  }

  private toolsJson(): string {
    return `${JSON.stringify(this._tools.map((t) => t._toDefinition()), null, 2)}\n`;
  }

  private deploymentSpec(): k8s.DeploymentSpec {
    return {
      replicas: this.replicas,
      selector: { matchLabels: this.selectorLabels },
      // Never below the declared replica count during a rollout.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: k8s.IntOrString.fromString('25%'), maxUnavailable: k8s.IntOrString.fromNumber(0) } },
      template: this._podTemplate(),
    };
  }

  private podTemplate(): k8s.PodTemplateSpec {
    const checksum = sha256(this.configJson(), this.props.systemPrompt.text, this.toolsJson(), this.bundle?.sha256 ?? this.delivery.image);
    const volumes: k8s.Volume[] = [
      { name: 'agent-config', configMap: { name: this.promptConfigMap.name, defaultMode: 0o444 } },
      tmpVolume('agent-tmp', this.props.tmpSizeLimit ?? Size.mebibytes(256)),
      { name: 'sidecar-config', configMap: { name: this.sidecarConfigMap.name, defaultMode: 0o444 } },
    ];
    if (this.sidecarBundleConfigMap) volumes.push({ name: 'sidecar-bundle', configMap: { name: this.sidecarBundleConfigMap.name, defaultMode: 0o444 } });
    volumes.push(tmpVolume('sidecar-tmp', Size.mebibytes(16)), ...this.sidecarMounts.volumes());
    const sidecar = runtimeContainer({
      name: SIDECAR_CONTAINER_NAME,
      delivery: this.delivery,
      resources: this.sidecarResources,
      configVolume: 'sidecar-config',
      bundleVolume: 'sidecar-bundle',
      tmpVolume: 'sidecar-tmp',
      secretMounts: this.sidecarMounts.mounts(),
      exposeProxy: false,
      lifecycle: waitUntilReady(),
    });
    return {
      metadata: {
        labels: this.labels,
        annotations: { [CHECKSUM_ANNOTATION]: checksum, 'kubectl.kubernetes.io/default-container': AGENT_CONTAINER_NAME },
      },
      spec: {
        serviceAccountName: this.serviceAccount.name,
        automountServiceAccountToken: this.props.serviceAccountToken ?? false,
        // No Docker-link variables for every Service of the namespace in the agent's env.
        enableServiceLinks: false,
        securityContext: podSecurityContext(RUNTIME_USER),
        terminationGracePeriodSeconds: this.gracePeriodSeconds,
        imagePullSecrets: this.props.imagePullSecrets?.map((name) => ({ name })),
        topologySpreadConstraints: topologySpread(this.selectorLabels),
        // The sidecar first: the kubelet starts containers in order and its postStart waits for /readyz.
        containers: [sidecar, this.agentContainer()],
        volumes,
      },
    };
  }

  private agentContainer(): k8s.Container {
    const p = this.props;
    const probe = (periodSeconds: number, timeoutSeconds: number): k8s.Probe | undefined => {
      if (p.port === undefined) return undefined;
      const port = k8s.IntOrString.fromString('http');
      return {
        ...(p.healthPath ? { httpGet: { path: p.healthPath, port } } : { tcpSocket: { port } }),
        periodSeconds,
        timeoutSeconds,
        failureThreshold: 3,
      };
    };
    return {
      name: AGENT_CONTAINER_NAME,
      image: p.image.ref,
      imagePullPolicy: p.image.pullPolicy,
      command: p.command,
      args: p.args,
      ports: p.port !== undefined ? [{ name: 'http', containerPort: p.port, protocol: 'TCP' }] : undefined,
      env: this.agentEnv(),
      resources: this.agentResources,
      securityContext: containerSecurityContext(p.runAsUser ?? RUNTIME_USER, p.runAsGroup ?? RUNTIME_USER),
      readinessProbe: probe(10, 3),
      livenessProbe: probe(20, 5),
      lifecycle: p.preStopCommand ? { preStop: { exec: { command: p.preStopCommand } } } : undefined,
      volumeMounts: [
        { name: 'agent-config', mountPath: AGENT_CONFIG_DIR, readOnly: true },
        { name: 'agent-tmp', mountPath: '/tmp' },
      ],
      terminationMessagePolicy: 'FallbackToLogsOnError',
    };
  }

  private agentEnv(): k8s.EnvVar[] {
    const proxy = `http://127.0.0.1:${RUNTIME_PROXY_PORT}`;
    const env: k8s.EnvVar[] = [{ name: 'AGENT_NAME', value: this.name }];
    if (this.props.model) env.push({ name: 'AGENT_MODEL', value: this.props.model });
    env.push(
      { name: 'AGENT_PROMPT_FILE', value: `${AGENT_CONFIG_DIR}/prompt.md` },
      { name: 'AGENT_TOOLS_FILE', value: `${AGENT_CONFIG_DIR}/tools.json` },
      { name: 'AGENT_TOOLS_URL', value: `${proxy}/tools` },
      { name: 'OPENAI_BASE_URL', value: `${proxy}/v1` },
      { name: 'ANTHROPIC_BASE_URL', value: proxy },
    );
    for (const name of ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY']) {
      if (!this.env.has(name) && !this.secretEnv.has(name)) env.push({ name, value: PLACEHOLDER_API_KEY });
    }
    for (const [name, value] of this.env) env.push({ name, value });
    for (const [name, s] of this.secretEnv) env.push({ name, valueFrom: { secretKeyRef: { name: s.secretName, key: s.key } } });
    return env;
  }
}
