/**
 * LlmGateway: the cdk-agents runtime in gateway mode, a central highly available Deployment
 * that holds the provider keys. Connected agents' sidecars sign each call with their own key;
 * the gateway verifies it, fails over across providers, caches and enforces global budgets.
 */
import { Duration, Lazy, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';
import { Construct } from 'constructs';
import type { ExternalSecret } from '../imports/external-secrets.io_externalsecrets';
import type { SidecarConfig, SidecarConfigInput } from '../spec';
import type { AgentService } from './agent-service';
import { BudgetScope, type Budget, type RateLimit } from './budgets';
import { bindAwsRole, type AwsRole } from './aws-role';
import { BudgetStore } from './budget-store';
import type { BudgetGuardGrant } from './budget-guard';
import { checkConfig, compact, setPath, type ConfigContext } from './config-check';
import { SecretBinder, externalSecret } from './external-secrets';
import type { GatewayCache } from './gateway-cache';
import type { Guardrails } from './guardrails';
import type { LoopGuard } from './loop-guard';
import { commonLabels, resolveName, resolveNamespace, selectorLabels } from './names';
import { PolicyRules } from './network';
import { CHECKSUM_ANNOTATION, kubeResources, podSecurityContext, sha256, tmpVolume, topologySpread } from './pod';
import type { LlmProvider } from './provider';
import {
  ADMIN_PORT_NAME,
  RUNTIME_ADMIN_PORT,
  RUNTIME_CONFIG_KEY,
  RUNTIME_PROXY_PORT,
  RUNTIME_SECRETS_DIR,
  RUNTIME_USER,
  SHUTDOWN_MARGIN_SECONDS,
  SecretMounts,
  delayShutdown,
  runtimeContainer,
} from './runtime-container';
import { disruptionBudget, horizontalAutoscaler, resolveReplicas, type Autoscaling } from './scaling';
import { wireProvider, wireStore, type RuntimeWiring } from './runtime-wiring';
import type { SecretStoreRef } from './secrets';
import { SidecarDelivery, bundleConfigMap, type SidecarBundle } from './sidecar-delivery';
import { GatewaySigningKeys } from './signing-keys';

/** The gateway's container. */
export const GATEWAY_CONTAINER_NAME = 'llm-gateway';

const COMPONENT = 'llm-gateway';
const DEFAULT_DRAIN = Duration.seconds(25);
/** Seconds a terminating pod keeps serving while endpoints and kube-proxy catch up. */
const ENDPOINT_GRACE_SECONDS = 5;
const DEFAULT_AUTOSCALING: Autoscaling = { minReplicas: 2, maxReplicas: 10, cpuTargetPercent: 70 };
/** Serves every agent: more headroom than a sidecar; size memory up for a large in-memory cache. */
const GATEWAY_RESOURCES: kplus.ContainerResources = {
  cpu: { request: kplus.Cpu.millis(500), limit: kplus.Cpu.units(2) },
  memory: { request: Size.mebibytes(256), limit: Size.mebibytes(512) },
};

/** Props of an LlmGateway. */
export interface LlmGatewayProps {
  /**
   * The gateway's name: the Service agents call (http://NAME.NAMESPACE.svc.cluster.local) and every object's name.
   * @default - derived from the construct id
   */
  readonly name?: string;
  /**
   * The namespace of every emitted object.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /** Providers in priority order; their keys are mounted into the gateway only. More with `addProvider()`. */
  readonly providers: LlmProvider[];
  /**
   * The keys agents sign their calls with, one per agent.
   * @default GatewaySigningKeys.fromSecret(`${name}-signing-keys`) (created out of band, never in git)
   */
  readonly signingKeys?: GatewaySigningKeys;
  /**
   * A response cache for deterministic requests.
   * @default - no cache
   */
  readonly cache?: GatewayCache;
  /**
   * Where budgets, rate limits and the Redis cache live.
   * @default BudgetStore.memory()
   */
  readonly store?: BudgetStore;
  /**
   * Guardrails applied at the gateway, on top of each agent sidecar's own.
   * @default Guardrails.defaults()
   */
  readonly guardrails?: Guardrails;
  /**
   * Budgets enforced per calling agent (scope agent) or end user. More with `addBudget()`.
   * @default - none
   */
  readonly budgets?: Budget[];
  /**
   * Rate limits per calling agent or end user. More with `addRateLimit()`.
   * @default - none
   */
  readonly rateLimits?: RateLimit[];
  /**
   * Accept per-pod budgets with the memory store (the effective cap multiplies by the replica count).
   * @default false
   */
  readonly acceptPerReplicaBudgets?: boolean;
  /**
   * A fixed pod count instead of the default autoscaler.
   * @default - autoscaled
   */
  readonly replicas?: number;
  /**
   * Accept a single gateway pod (every agent loses LLM access while it restarts): dev clusters only.
   * @default false
   */
  readonly acceptSingleReplica?: boolean;
  /**
   * The HorizontalPodAutoscaler.
   * @default - 2 to 10 pods at 70% CPU
   */
  readonly autoscaling?: Autoscaling;
  /**
   * The gateway container's resources; fields left out keep their defaults.
   * @default - requests cpu 500m, memory 256Mi; limits cpu 2, memory 512Mi
   */
  readonly resources?: kplus.ContainerResources;
  /**
   * Who may reach the admin port 8788 (Prometheus). More with `allowAdminFrom()`.
   * @default - nobody
   */
  readonly adminAccessFrom?: kplus.INetworkPolicyPeer[];
  /**
   * How the runtime gets into the pod.
   * @default SidecarDelivery.configMap()
   */
  readonly runtime?: SidecarDelivery;
  /**
   * The External Secrets store for AWS Secrets Manager keys.
   * @default - none (AWS references are an error)
   */
  readonly secretStore?: SecretStoreRef;
  /**
   * The IAM role the gateway's pods assume (IRSA), e.g. for Amazon Bedrock: the ServiceAccount gets
   * the `eks.amazonaws.com/role-arn` annotation. `AgentPlatform.roleOf(name)` derives it from the platform spec.
   * @default - no role: the pods get no AWS credentials from their ServiceAccount
   */
  readonly awsRole?: AwsRole;
  /**
   * How long in-flight calls may finish after SIGTERM.
   * @default Duration.seconds(25)
   */
  readonly drainTimeout?: Duration;
  /**
   * The cluster's DNS domain, for the URL agents call.
   * @default 'cluster.local'
   */
  readonly clusterDomain?: string;
  /**
   * Secrets for pulling the runtime image from a private registry.
   * @default - none
   */
  readonly imagePullSecrets?: string[];
}

interface BoundProvider {
  readonly provider: LlmProvider;
  readonly keyFile?: string;
}

/** The central LLM gateway. */
export class LlmGateway extends Construct implements kplus.IPodSelector, kplus.INetworkPolicyPeer {
  /** The gateway's name (and its Service's). */
  public readonly name: string;
  /** The namespace of every emitted object, when known at synth. */
  public readonly namespace?: string;
  /** Where agents call it: http://NAME.NAMESPACE.svc.CLUSTER_DOMAIN (port 80). */
  public readonly url: string;
  /** The labels the Deployment selects its pods by. */
  public readonly selectorLabels: Record<string, string>;
  /** The Deployment (the construct's default child, id 'Resource'). */
  public readonly deployment: k8s.KubeDeployment;
  /** The pods' ServiceAccount (no API token). */
  public readonly serviceAccount: kplus.ServiceAccount;
  /** The validated runtime config. */
  public readonly configMap: kplus.ConfigMap;
  /** The runtime bundle, with `SidecarDelivery.configMap()`. */
  public readonly bundleConfigMap?: kplus.ConfigMap;
  /** Port 80 (`http`) to the runtime's 8787, and `metrics` (8788) for ServiceMonitors. */
  public readonly service: kplus.Service;
  /** The default-deny NetworkPolicy selecting the gateway's pods. */
  public readonly networkPolicy: kplus.NetworkPolicy;
  /** maxUnavailable 1. */
  public readonly podDisruptionBudget?: k8s.KubePodDisruptionBudget;
  /** The HorizontalPodAutoscaler, unless `replicas` is fixed. */
  public readonly autoscaler?: k8s.KubeHorizontalPodAutoscalerV2;
  /** The ExternalSecret syncing the signing keys, with `GatewaySigningKeys.fromAwsSecretsManager`. */
  public readonly signingKeysExternalSecret?: ExternalSecret;
  /** The Secret holding one signing key per agent. */
  public readonly signingKeysSecretName: string;

  private readonly owner: string;
  private readonly labels: Record<string, string>;
  private readonly props: LlmGatewayProps;
  private readonly replicas?: number;
  private readonly maxPods: number;
  private store: BudgetStore;
  private readonly delivery: SidecarDelivery;
  private readonly bundle?: SidecarBundle;
  private readonly drainSeconds: number;
  private readonly resources: k8s.ResourceRequirements;
  private readonly rules: PolicyRules;
  private readonly secrets: SecretBinder;
  private readonly mounts = new SecretMounts();
  private readonly signingKeys: GatewaySigningKeys;
  private readonly _providers: BoundProvider[] = [];
  private readonly _agents: { readonly agent: AgentService; readonly keyFile: string }[] = [];
  private readonly _budgets: Budget[] = [];
  private readonly _rateLimits: RateLimit[] = [];
  private readonly overrides = new Map<string, unknown>();
  private readonly wiring: RuntimeWiring;
  private storeConfig: NonNullable<SidecarConfigInput['store']>;
  /** The loop guard of an attached BudgetGuard. */
  private guardLoopGuard?: LoopGuard;
  private constructed = false;

  constructor(scope: Construct, id: string, props: LlmGatewayProps) {
    super(scope, id);
    this.props = props;
    this.name = resolveName('LlmGateway', id, props.name);
    this.owner = `LlmGateway '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    const domain = props.clusterDomain ?? 'cluster.local';
    this.url = this.namespace ? `http://${this.name}.${this.namespace}.svc.${domain}` : `http://${this.name}`;
    this.selectorLabels = selectorLabels(this.name, COMPONENT);
    this.labels = commonLabels(this.name, COMPONENT);
    this.store = props.store ?? BudgetStore.memory();
    this.delivery = props.runtime ?? SidecarDelivery.configMap();
    this.signingKeys = props.signingKeys ?? GatewaySigningKeys.fromSecret(`${this.name}-signing-keys`);
    this.signingKeysSecretName = this.signingKeys.secretName ?? `${this.name}-signing-keys`;

    const autoscaling = props.replicas === undefined ? (props.autoscaling ?? DEFAULT_AUTOSCALING) : props.autoscaling;
    this.replicas = resolveReplicas(this.owner, props.replicas, autoscaling, 2);
    const minPods = autoscaling ? autoscaling.minReplicas : this.replicas!;
    this.maxPods = autoscaling ? autoscaling.maxReplicas : this.replicas!;
    if (minPods < 2 && !props.acceptSingleReplica) {
      const prop = autoscaling ? "'autoscaling.minReplicas'" : "'replicas'";
      throw new Error(
        `${this.owner}: ${prop} is ${minPods}: one gateway pod is a single point of failure for every connected agent. ` +
          `Use 2 or more, or set 'acceptSingleReplica: true' (dev clusters).`,
      );
    }
    if (props.cache?.inRedis && !this.store.isShared) {
      throw new Error(`${this.owner}: 'cache' is GatewayCache.redis(), which lives in the store: set 'store: BudgetStore.redis(...)', or use GatewayCache.memory().`);
    }
    if (props.cache && !props.cache.inRedis && this.store.isShared) {
      throw new Error(`${this.owner}: 'cache' is GatewayCache.memory(), but the runtime keeps the cache in the Redis store: use GatewayCache.redis().`);
    }
    this.drainSeconds = Math.ceil((props.drainTimeout ?? DEFAULT_DRAIN).toSeconds({ integral: false }));
    if (this.drainSeconds < 1) throw new Error(`${this.owner}: 'drainTimeout' must be at least 1 second.`);
    this.resources = kubeResources('resources', props.resources, GATEWAY_RESOURCES);
    if (this.delivery.bundled) {
      try {
        this.bundle = this.delivery._loadBundle();
      } catch (err) {
        throw new Error(`${this.owner}: ${(err as Error).message}`);
      }
    }

    const metadata = (name: string) => ({ name, namespace: this.namespace, labels: this.labels });
    this.secrets = new SecretBinder({
      scope: this,
      id: 'ProviderKeys',
      secretName: `${this.name}-provider-keys`,
      namespace: this.namespace,
      labels: this.labels,
      store: props.secretStore,
      owner: this.owner,
    });
    if (this.signingKeys.awsSecretId) {
      if (!props.secretStore) {
        throw new Error(`${this.owner}: 'signingKeys' come from AWS Secrets Manager: set 'secretStore' (e.g. SecretStoreRef.clusterSecretStore('aws-secrets-manager')).`);
      }
      const secretId = this.signingKeys.awsSecretId;
      this.signingKeysExternalSecret = externalSecret(this, 'SigningKeys', {
        name: this.signingKeysSecretName,
        namespace: this.namespace,
        labels: this.labels,
        store: props.secretStore,
        // One Secret key per JSON property: one per agent.
        spec: () => ({ dataFrom: [{ extract: { key: secretId } }] }),
      });
    }

    this.serviceAccount = new kplus.ServiceAccount(this, 'ServiceAccount', { metadata: metadata(this.name), automountToken: false });
    this.configMap = new kplus.ConfigMap(this, 'Config', {
      metadata: metadata(`${this.name}-config`),
      data: { [RUNTIME_CONFIG_KEY]: Lazy.any({ produce: () => this.configJson() }) },
    });
    if (this.bundle) this.bundleConfigMap = bundleConfigMap(this, 'Bundle', metadata(`${this.name}-bundle`), this.bundle, this.owner);
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
    this.wiring = { owner: this.owner, secrets: this.secrets, mounts: this.mounts, rules: this.rules };

    this.deployment = new k8s.KubeDeployment(this, 'Resource', {
      metadata: metadata(this.name),
      spec: Lazy.any({ produce: () => this.deploymentSpec() }),
    });
    this.service = new kplus.Service(this, 'Service', {
      metadata: metadata(this.name),
      selector: this,
      ports: [
        { name: 'http', port: 80, targetPort: RUNTIME_PROXY_PORT },
        // Reachable only from `adminAccessFrom` peers (NetworkPolicy).
        { name: ADMIN_PORT_NAME, port: RUNTIME_ADMIN_PORT, targetPort: RUNTIME_ADMIN_PORT },
      ],
    });
    const workload = { name: this.name, namespace: this.namespace, labels: this.labels, selector: this.selectorLabels };
    if (minPods >= 2) this.podDisruptionBudget = disruptionBudget(this, 'DisruptionBudget', workload);
    if (autoscaling) this.autoscaler = horizontalAutoscaler(this, 'Autoscaler', workload, autoscaling);

    this.storeConfig = wireStore(this.wiring, this.store);
    for (const provider of props.providers) this.addProvider(provider);
    for (const budget of props.budgets ?? []) this.addBudget(budget);
    for (const limit of props.rateLimits ?? []) this.addRateLimit(limit);
    for (const peer of props.adminAccessFrom ?? []) this.allowAdminFrom(peer);

    this.constructed = true;
    this.checkNow();
    this.node.addValidation({ validate: () => this.validateAtSynth() });
  }

  /** The AWS Secrets Manager secret its signing keys are synced from, if they are. */
  public get signingKeysAwsSecretId(): string | undefined {
    return this.signingKeys.awsSecretId;
  }

  /** The connected agents. */
  public get agents(): AgentService[] {
    return this._agents.map((a) => a.agent);
  }

  /** Its providers, in priority order. */
  public get providers(): LlmProvider[] {
    return this._providers.map((p) => p.provider);
  }

  /** The ExternalSecret of AWS-sourced provider keys, if any. */
  public get providerKeysExternalSecret(): ExternalSecret | undefined {
    return this.secrets.externalSecret;
  }

  /**
   * Lets `agent` call the gateway: its sidecar gets the gateway as its provider and mounts its
   * signing key; the gateway accepts its signature; NetworkPolicies open agent -> gateway:8787.
   */
  public connect(agent: AgentService): void {
    if (this._agents.some((a) => a.agent === agent)) return;
    const clash = this._agents.find((a) => a.agent.name === agent.name);
    if (clash) {
      throw new Error(
        `${this.owner}: two connected agents are named '${agent.name}' (${clash.agent.node.path} and ${agent.node.path}); the gateway tells agents apart by name (and signing key). Rename one.`,
      );
    }
    if ((this.namespace === undefined) !== (agent.namespace === undefined)) {
      throw new Error(
        `${this.owner}: cannot connect agent '${agent.name}': only one of them has a namespace (gateway: ${this.namespace ?? 'none'}, agent: ${agent.namespace ?? 'none'}), ` +
          `so the agent's URL for the gateway and both NetworkPolicies could point at the wrong namespace. Set 'namespace' (or the chart's) on both.`,
      );
    }
    agent._connectGateway({
      gateway: this,
      gatewayName: this.name,
      baseUrl: this.url,
      namespace: this.namespace,
      signingSecretName: this.signingKeysSecretName,
      signingAwsSecretId: this.signingKeys.awsSecretId,
    });
    const keyFile = this.mounts.add('signing-keys', `${RUNTIME_SECRETS_DIR}/signing-keys`, agent.name, { secretName: this.signingKeysSecretName, key: agent.name });
    this._agents.push({ agent, keyFile });
    this.rules.allowIngress(agent, RUNTIME_PROXY_PORT);
    this.checkNow();
  }

  /** Adds a provider after those in `providers`. */
  public addProvider(provider: LlmProvider): void {
    if (this._providers.some((p) => p.provider.name === provider.name)) {
      throw new Error(`${this.owner}: two providers are named '${provider.name}'; give one a distinct 'name'.`);
    }
    this._providers.push({ provider, keyFile: wireProvider(this.wiring, provider) });
    this.checkNow();
  }

  /** Its budgets. */
  public get budgets(): Budget[] {
    return [...this._budgets];
  }

  /** Its rate limits. */
  public get rateLimits(): RateLimit[] {
    return [...this._rateLimits];
  }

  /** The loop guard of an attached BudgetGuard, if any (per calling agent's run). */
  public get loopGuard(): LoopGuard | undefined {
    return this.guardLoopGuard;
  }

  /** Where its budgets, rate limits and the Redis cache live. */
  public get budgetStore(): BudgetStore {
    return this.store;
  }

  /**
   * @internal Called by `BudgetGuard.attach()`: the guard's limits join the gateway's own, checked the
   * same way (with the guard's store and acceptance), then its store and loop guard if it brings them.
   */
  public _attachBudgetGuard(grant: BudgetGuardGrant): void {
    const store = grant.store && !this.store.isShared ? grant.store : this.store;
    if (store !== this.store && this.props.cache && !this.props.cache.inRedis) {
      throw new Error(
        `${this.owner}: ${grant.owner} brings a Redis store, where the runtime also keeps the response cache, but 'cache' is GatewayCache.memory(). ` +
          `Use GatewayCache.redis() (one cache for every gateway pod), or remove 'cache'.`,
      );
    }
    const via = { store, accept: grant.acceptPerReplicaBudgets, owner: grant.owner };
    for (const b of grant.budgets) this.checkScope(b.scope, `budget ${b} of ${grant.owner}`, via);
    for (const r of grant.rateLimits) this.checkScope(r.scope, `rate limit ${r} of ${grant.owner}`, via);
    if (grant.loopGuard) this.checkScope(BudgetScope.RUN, `loop guard of ${grant.owner}`, via);
    if (store !== this.store) {
      this.store = store;
      this.storeConfig = wireStore(this.wiring, store);
    }
    if (grant.loopGuard) this.guardLoopGuard = grant.loopGuard;
    this._budgets.push(...grant.budgets);
    this._rateLimits.push(...grant.rateLimits);
    this.checkNow();
  }

  /** Adds a budget (kept per calling agent or end user). */
  public addBudget(budget: Budget): void {
    this.checkScope(budget.scope, `budget ${budget}`);
    this._budgets.push(budget);
    this.checkNow();
  }

  /** Adds a rate limit. */
  public addRateLimit(limit: RateLimit): void {
    this.checkScope(limit.scope, `rate limit ${limit}`);
    this._rateLimits.push(limit);
    this.checkNow();
  }

  /** Lets `peer` reach the admin port 8788 (/metrics, /healthz, /readyz). */
  public allowAdminFrom(peer: kplus.INetworkPolicyPeer): void {
    this.rules.allowIngress(peer, RUNTIME_ADMIN_PORT);
  }

  /** Sets a runtime config field the props do not cover, by dotted path. Validated like the rest. */
  public addConfigOverride(path: string, value: unknown): void {
    this.overrides.set(path, value);
    this.checkNow();
  }

  /** The runtime config as the gateway will read it, every default filled in. */
  public renderConfig(): SidecarConfig {
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

  /**
   * Every scope is shared here, runs included: the Service spreads one run's calls over the gateway pods.
   * `via`: a BudgetGuard's limits, checked with its store and acceptance, and the fix named on it.
   */
  private checkScope(scope: BudgetScope, what: string, via?: { store: BudgetStore; accept: boolean; owner: string }): void {
    if (this.maxPods < 2 || (via?.store ?? this.store).isShared || this.props.acceptPerReplicaBudgets || via?.accept) return;
    const on = via ? ` on ${via.owner}` : '';
    throw new Error(
      `${this.owner}: the ${what} is shared by every gateway pod, but with up to ${this.maxPods} pods and the memory store each keeps its own count, so the real cap is ${this.maxPods}x` +
        `${scope === BudgetScope.RUN ? ' (the Service spreads a run\'s calls over the pods)' : ''}. ` +
        `Set 'store: BudgetStore.redis({ url, passwordSecret })'${on}, or 'acceptPerReplicaBudgets: true'${on} if per-pod limits are intended.`,
    );
  }

  private configContext(): ConfigContext {
    return {
      owner: this.owner,
      providerNames: this._providers.map((p) => p.provider.name),
      toolNames: [],
      agentNames: this._agents.map((a) => a.agent.name),
      overrides: [...this.overrides.keys()],
    };
  }

  /**
   * Before any agent is connected the agent list is incomplete, not wrong, and so are the teams a team
   * budget needs (a later connect brings them): both are checked at synth.
   */
  private checkNow(): void {
    if (this.constructed) {
      checkConfig(this.configInput(), this.configContext(), (i) => (i.path === 'gateway.agents' && this._agents.length === 0) || /^(budgets|rateLimits)\[\d+\]\.scope$/.test(i.path));
    }
  }

  private validateAtSynth(): string[] {
    if (this._agents.length === 0) {
      return [`${this.owner}: no agent is connected. Call gateway.connect(agent) (or set an AgentService's 'gateway' prop), or remove the gateway.`];
    }
    try {
      checkConfig(this.configInput(), this.configContext());
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  }

  private configInput(): SidecarConfigInput {
    const input: Record<string, unknown> = {
      version: 1,
      mode: 'gateway',
      listen: { host: '0.0.0.0', port: RUNTIME_PROXY_PORT },
      admin: { host: '0.0.0.0', port: RUNTIME_ADMIN_PORT },
      providers: this._providers.map((p) => p.provider._toConfig(p.keyFile)),
      gateway: { agents: this._agents.map((a) => ({ name: a.agent.name, team: a.agent.team, signingKey: { file: a.keyFile } })) },
      cache: this.props.cache?._toConfig(),
      guardrails: this.props.guardrails?._toConfig(),
      budgets: this._budgets.map((b) => b._toConfig()),
      rateLimits: this._rateLimits.map((r) => r._toConfig()),
      loopGuard: this.guardLoopGuard?._toConfig(),
      store: this.storeConfig,
      shutdown: { drainMs: this.drainSeconds * 1000 },
    };
    for (const [path, value] of this.overrides) setPath(input, path, value);
    return compact(input) as SidecarConfigInput;
  }

  private configJson(): string {
    return `${JSON.stringify(this.renderConfig(), null, 2)}\n`;
  }

  private deploymentSpec(): k8s.DeploymentSpec {
    const checksum = sha256(this.configJson(), this.bundle?.sha256 ?? this.delivery.image);
    const volumes: k8s.Volume[] = [{ name: 'config', configMap: { name: this.configMap.name, defaultMode: 0o444 } }];
    if (this.bundleConfigMap) volumes.push({ name: 'bundle', configMap: { name: this.bundleConfigMap.name, defaultMode: 0o444 } });
    volumes.push(tmpVolume('tmp', Size.mebibytes(16)), ...this.mounts.volumes());
    const container = runtimeContainer({
      name: GATEWAY_CONTAINER_NAME,
      delivery: this.delivery,
      resources: this.resources,
      configVolume: 'config',
      bundleVolume: 'bundle',
      tmpVolume: 'tmp',
      secretMounts: this.mounts.mounts(),
      exposeProxy: true,
      lifecycle: delayShutdown(ENDPOINT_GRACE_SECONDS),
    });
    return {
      replicas: this.replicas,
      selector: { matchLabels: this.selectorLabels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: k8s.IntOrString.fromString('25%'), maxUnavailable: k8s.IntOrString.fromNumber(0) } },
      template: {
        metadata: { labels: this.labels, annotations: { [CHECKSUM_ANNOTATION]: checksum } },
        spec: {
          serviceAccountName: this.serviceAccount.name,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: podSecurityContext(RUNTIME_USER),
          terminationGracePeriodSeconds: ENDPOINT_GRACE_SECONDS + this.drainSeconds + SHUTDOWN_MARGIN_SECONDS,
          imagePullSecrets: this.props.imagePullSecrets?.map((name) => ({ name })),
          topologySpreadConstraints: topologySpread(this.selectorLabels),
          containers: [container],
          volumes,
        },
      },
    };
  }
}
