/**
 * WarmPool: an agent's cold start has three parts, and each has its remedy here.
 * - No ready pod: `readyBuffer` keeps pods ready beyond what the autoscaler asks for.
 * - No node with room: `placeholders` hold pods' worth of room at PriorityClass -1; the scheduler
 *   evicts them the moment an agent pod needs the room, and the cluster autoscaler provisions a
 *   node for the evicted placeholder (it ignores only pods below -10), so the room comes back.
 * - No image on a new node: `prePull` runs a DaemonSet whose init containers pull the agent's and
 *   the sidecar's images on every node.
 */
import { ApiObject, Chart, JsonPatch, Lazy } from 'cdk8s';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';
import { Construct } from 'constructs';
import type { AgentService } from './agent-service';
import { checkPinnedImage } from './image';
import { commonLabels, selectorLabels } from './names';
import { containerSecurityContext, podSecurityContext } from './pod';
import { QueueWorker } from './queue-worker';
import { disruptionBudget } from './scaling';

type Json = Record<string, any>;

/** The pause image of the placeholders and of the pre-pull DaemonSet's main container. */
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.9';
/**
 * The pre-pull helper: its busybox binary is statically linked (the musl build), so a copy of it
 * runs `true` inside any image, one without a shell or libc included.
 */
export const PREPULL_HELPER_IMAGE = 'docker.io/library/busybox:1.36.1-musl';
/** The PriorityClass the placeholders run at, created once per chart (cluster-scoped: one name for every pool). */
export const PLACEHOLDER_PRIORITY_CLASS = 'cdk-agents-warm-pool';
/**
 * Below every workload's default of 0, so any pod preempts a placeholder; not below the cluster
 * autoscaler's expendable-pods cutoff (-10), or pending placeholders would no longer bring nodes.
 */
export const PLACEHOLDER_PRIORITY = -1;
/** The `nobody` user of the pause and busybox images. */
const POOL_USER = 65534;
const HELPER_DIR = '/cdk-agents-prepull';
const PLACEHOLDER_COMPONENT = 'warm-pool-placeholder';
const PREPULL_COMPONENT = 'image-prepull';
const PRIORITY_CLASS_ID = 'CdkAgentsWarmPoolPriorityClass';
const PRIORITY_CLASS_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/**
 * pause only waits for a signal: `/pause -v` prints its version and exits 0, so the probes show
 * the container is up and execs, once a minute.
 */
const PAUSE_PROBE: k8s.Probe = { exec: { command: ['/pause', '-v'] }, periodSeconds: 60, timeoutSeconds: 5, failureThreshold: 3 };
/** A pulling or pausing container does nothing: the least the scheduler accepts. */
const IDLE_RESOURCES: k8s.ResourceRequirements = {
  requests: { cpu: k8s.Quantity.fromString('5m'), memory: k8s.Quantity.fromString('8Mi') },
  limits: { cpu: k8s.Quantity.fromString('100m'), memory: k8s.Quantity.fromString('32Mi') },
};

/** A number of pods, typed: `WarmPoolSize.replicas(2)`, `WarmPoolSize.percentOfMaxReplicas(25)`. */
export class WarmPoolSize {
  /** A fixed number of pods (at least 1). */
  public static replicas(count: number): WarmPoolSize {
    if (!Number.isInteger(count) || count < 1) throw new Error(`WarmPoolSize.replicas(${count}): the count must be a whole number >= 1.`);
    return new WarmPoolSize(count, undefined);
  }

  /** A share of the agent's max replicas, rounded up (1 to 100). */
  public static percentOfMaxReplicas(percent: number): WarmPoolSize {
    if (!Number.isInteger(percent) || percent < 1 || percent > 100) {
      throw new Error(`WarmPoolSize.percentOfMaxReplicas(${percent}): the percentage must be a whole number from 1 to 100.`);
    }
    return new WarmPoolSize(undefined, percent);
  }

  private constructor(
    private readonly count: number | undefined,
    private readonly percent: number | undefined,
  ) {}

  /** Pods, for an agent with at most `maxReplicas`. */
  public resolve(maxReplicas: number): number {
    return this.count ?? Math.ceil((maxReplicas * this.percent!) / 100);
  }

  public toString(): string {
    return this.count !== undefined ? `${this.count}` : `${this.percent}% of maxReplicas`;
  }
}

/** Props of a WarmPool. */
export interface WarmPoolProps {
  /** The agent to keep warm (an AgentService or a QueueWorker). */
  readonly agent: AgentService;
  /**
   * Ready pods beyond demand. For a QueueWorker in Deployment mode KEDA runs the backlog's pods
   * plus these; for an autoscaled AgentService the HPA's `minReplicas` rises by this many.
   * @default - none
   */
  readonly readyBuffer?: WarmPoolSize;
  /**
   * Placeholder pods, each sized to one agent pod's requests, at PriorityClass -1.
   * @default - none
   */
  readonly placeholders?: WarmPoolSize;
  /**
   * A DaemonSet pulling the agent pod's images (agent and sidecar) on every node.
   * @default true
   */
  readonly prePull?: boolean;
  /**
   * An existing PriorityClass for the placeholders (its value must be below 0 and not below -10).
   * @default - the PriorityClass 'cdk-agents-warm-pool' (value -1, preemptionPolicy Never), emitted once in the chart
   */
  readonly placeholderPriorityClass?: string;
  /**
   * The pause image (pinned): placeholders and the DaemonSet's idle container.
   * @default registry.k8s.io/pause:3.9
   */
  readonly pauseImage?: string;
  /**
   * The pre-pull helper image (pinned): its `/bin/busybox` must be statically linked.
   * @default docker.io/library/busybox:1.36.1-musl
   */
  readonly prePullHelperImage?: string;
}

/** Keeps an agent warm: ready pods, provisioned room and cached images. */
export class WarmPool extends Construct {
  /** The agent kept warm. */
  public readonly agent: AgentService;
  /** Ready pods beyond demand (0 without `readyBuffer`). */
  public readonly readyBuffer: number;
  /** Placeholder pods (0 without `placeholders`). */
  public readonly placeholders: number;
  /** The placeholders' Deployment: the construct's default child (id 'Resource') when there are placeholders. */
  public readonly placeholderDeployment?: k8s.KubeDeployment;
  /** maxUnavailable 1 over the placeholders, when there are at least 2: a node drain takes the reserved room one pod at a time. */
  public readonly placeholderDisruptionBudget?: k8s.KubePodDisruptionBudget;
  /** The image pre-pull DaemonSet (the default child when there are no placeholders). */
  public readonly prePullDaemonSet?: k8s.KubeDaemonSet;
  /** The placeholders' PriorityClass, when this pool created it (one per chart, shared by its pools). */
  public readonly priorityClass?: k8s.KubePriorityClass;
  /** Default-deny both ways for the placeholder and pre-pull pods (they talk to nobody). */
  public readonly networkPolicy?: k8s.KubeNetworkPolicy;

  private readonly owner: string;
  private readonly priorityClassName?: string;
  private readonly pauseImage: string;
  private readonly helperImage: string;

  constructor(scope: Construct, id: string, props: WarmPoolProps) {
    super(scope, id);
    const agent = props.agent;
    this.agent = agent;
    this.owner = `WarmPool of '${agent.name}'`;
    this.pauseImage = props.pauseImage ?? PAUSE_IMAGE;
    this.helperImage = props.prePullHelperImage ?? PREPULL_HELPER_IMAGE;
    checkPinnedImage('pauseImage', this.pauseImage);
    checkPinnedImage('prePullHelperImage', this.helperImage);
    const prePull = props.prePull ?? true;
    if (!props.readyBuffer && !props.placeholders && !prePull) {
      throw new Error(`${this.owner}: nothing to keep warm: set 'readyBuffer', 'placeholders', or leave 'prePull' on.`);
    }
    const maxReplicas = agent._maxReplicas;
    this.readyBuffer = props.readyBuffer?.resolve(maxReplicas) ?? 0;
    this.placeholders = props.placeholders?.resolve(maxReplicas) ?? 0;
    if (this.placeholders > maxReplicas) {
      throw new Error(
        `${this.owner}: 'placeholders' (${props.placeholders}) is more than the agent's max replicas (${maxReplicas}): it could never use that room. ` +
          `Lower placeholders or raise the agent's max replicas.`,
      );
    }
    if (props.placeholderPriorityClass !== undefined && !PRIORITY_CLASS_NAME.test(props.placeholderPriorityClass)) {
      throw new Error(`${this.owner}: 'placeholderPriorityClass' ('${props.placeholderPriorityClass}') is not a valid PriorityClass name.`);
    }
    if (this.readyBuffer) agent._addReadyBuffer(this.readyBuffer, this.owner);

    const namespace = agent.namespace;
    const metadata = (name: string, component: string) => ({ name, namespace, labels: commonLabels(agent.name, component) });
    if (this.placeholders) {
      this.priorityClassName = props.placeholderPriorityClass ?? PLACEHOLDER_PRIORITY_CLASS;
      if (props.placeholderPriorityClass === undefined) this.priorityClass = priorityClassOf(this);
      this.placeholderDeployment = new k8s.KubeDeployment(this, 'Resource', {
        metadata: metadata(`${agent.name}-warm-pool`, PLACEHOLDER_COMPONENT),
        spec: Lazy.any({ produce: () => this.placeholderSpec() }),
      });
      if (this.placeholders >= 2) {
        this.placeholderDisruptionBudget = disruptionBudget(this, 'PlaceholderDisruptionBudget', {
          ...metadata(`${agent.name}-warm-pool`, PLACEHOLDER_COMPONENT),
          selector: selectorLabels(agent.name, PLACEHOLDER_COMPONENT),
        });
      }
    }
    if (prePull) {
      this.prePullDaemonSet = new k8s.KubeDaemonSet(this, this.placeholders ? 'PrePull' : 'Resource', {
        metadata: metadata(`${agent.name}-image-prepull`, PREPULL_COMPONENT),
        spec: Lazy.any({ produce: () => this.prePullSpec() }),
      });
    }
    if (this.placeholders || prePull) {
      this.networkPolicy = new k8s.KubeNetworkPolicy(this, 'NetworkPolicy', {
        metadata: metadata(`${agent.name}-warm-pool`, PLACEHOLDER_COMPONENT),
        spec: {
          podSelector: {
            matchLabels: { 'app.kubernetes.io/name': agent.name },
            matchExpressions: [{ key: 'app.kubernetes.io/component', operator: 'In', values: [PLACEHOLDER_COMPONENT, PREPULL_COMPONENT] }],
          },
          policyTypes: ['Ingress', 'Egress'],
        },
      });
    }
    this.node.addValidation({ validate: () => this.validateAtSynth() });
  }

  /**
   * What one agent pod requests, as synthesized (patches included): its containers and native
   * sidecars together, or its largest init container if that is more.
   */
  public podRequests(): Record<string, string> {
    const spec = this.agentPodSpec();
    const inits: Json[] = spec.initContainers ?? [];
    const running = [...(spec.containers as Json[]), ...inits.filter((c) => c.restartPolicy === 'Always')];
    const initOnly = inits.filter((c) => c.restartPolicy !== 'Always');
    const total = sumRequests(running);
    for (const init of initOnly) {
      for (const [resource, amount] of Object.entries(sumRequests([init]))) total[resource] = Math.max(total[resource] ?? 0, amount);
    }
    return Object.fromEntries(Object.entries(total).map(([resource, amount]) => [resource, formatQuantity(resource, amount)]));
  }

  private validateAtSynth(): string[] {
    try {
      this.podRequests();
      return [];
    } catch (err) {
      return [`${this.owner}: ${(err as Error).message}`];
    }
  }

  /** The agent's pod spec as synthesized: its Deployment's (a Job worker: its ScaledJob's), JSON patches included. */
  private agentPodSpec(): Json {
    const scaledJob = this.agent instanceof QueueWorker ? this.agent.scaledJob : undefined;
    if (scaledJob) return ApiObject.of(scaledJob).toJson().spec.jobTargetRef.template.spec;
    return ApiObject.of(this.agent.deployment).toJson().spec.template.spec;
  }

  /** Where the agent's pods may run: the placeholders and pre-pulls go to the same nodes. */
  private placement(): Pick<k8s.PodSpec, 'nodeSelector' | 'affinity' | 'tolerations' | 'imagePullSecrets'> {
    const spec = this.agentPodSpec();
    return { nodeSelector: spec.nodeSelector, affinity: spec.affinity, tolerations: spec.tolerations, imagePullSecrets: spec.imagePullSecrets };
  }

  private placeholderSpec(): k8s.DeploymentSpec {
    const selector = selectorLabels(this.agent.name, PLACEHOLDER_COMPONENT);
    const quantities = Object.fromEntries(Object.entries(this.podRequests()).map(([r, q]) => [r, k8s.Quantity.fromString(q)]));
    const spread = (topologyKey: string): k8s.TopologySpreadConstraint => ({
      topologyKey,
      maxSkew: 1,
      whenUnsatisfiable: 'ScheduleAnyway',
      labelSelector: { matchLabels: selector },
    });
    return {
      replicas: this.placeholders,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: commonLabels(this.agent.name, PLACEHOLDER_COMPONENT) },
        spec: {
          priorityClassName: this.priorityClassName,
          // Preempted placeholders leave at once: the agent pod waiting for the room starts sooner.
          terminationGracePeriodSeconds: 0,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: podSecurityContext(POOL_USER),
          ...this.placement(),
          // Room on as many nodes and zones as there are placeholders, where the agent's pods would spread.
          topologySpreadConstraints: [spread('topology.kubernetes.io/zone'), spread('kubernetes.io/hostname')],
          containers: [
            {
              name: 'placeholder',
              image: this.pauseImage,
              imagePullPolicy: 'IfNotPresent',
              // Limits equal to requests: a namespace LimitRange cannot default a limit below them.
              resources: { requests: quantities, limits: quantities },
              securityContext: containerSecurityContext(POOL_USER, POOL_USER),
              livenessProbe: PAUSE_PROBE,
              readinessProbe: PAUSE_PROBE,
            },
          ],
        },
      },
    };
  }

  private prePullSpec(): k8s.DaemonSetSpec {
    const selector = selectorLabels(this.agent.name, PREPULL_COMPONENT);
    const spec = this.agentPodSpec();
    const mount: k8s.VolumeMount = { name: 'prepull-helper', mountPath: HELPER_DIR };
    const images = new Map<string, string>();
    for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Json[]) if (c.image && !images.has(c.image)) images.set(c.image, c.name);
    const idle = (name: string, image: string, command: string[], mounts: k8s.VolumeMount[]): k8s.Container => ({
      name,
      image,
      imagePullPolicy: 'IfNotPresent',
      command: command.length ? command : undefined,
      // The image's WORKDIR may be closed to this user; / never is.
      workingDir: command.length ? '/' : undefined,
      resources: IDLE_RESOURCES,
      securityContext: containerSecurityContext(POOL_USER, POOL_USER),
      volumeMounts: mounts.length ? mounts : undefined,
    });
    return {
      selector: { matchLabels: selector },
      // A new image version is pulled on a quarter of the nodes at a time, not all at once.
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: k8s.IntOrString.fromString('25%') } },
      template: {
        metadata: { labels: commonLabels(this.agent.name, PREPULL_COMPONENT) },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: podSecurityContext(POOL_USER),
          terminationGracePeriodSeconds: 1,
          ...this.placement(),
          initContainers: [
            // A static busybox into a shared emptyDir: the images below may have no shell at all.
            idle('helper', this.helperImage, ['/bin/busybox', 'cp', '/bin/busybox', `${HELPER_DIR}/busybox`], [mount]),
            // Pulling is the point: each runs `true` from the copy and exits.
            ...[...images].map(([image, container]) => idle(`pull-${container}`.slice(0, 63), image, [`${HELPER_DIR}/busybox`, 'true'], [mount])),
          ],
          containers: [{ ...idle('pause', this.pauseImage, [], []), livenessProbe: PAUSE_PROBE, readinessProbe: PAUSE_PROBE }],
          volumes: [{ name: 'prepull-helper', emptyDir: { sizeLimit: k8s.Quantity.fromString('8Mi') } }],
        },
      },
    };
  }
}

/** The chart's placeholder PriorityClass, created by its first WarmPool. */
function priorityClassOf(pool: Construct): k8s.KubePriorityClass {
  const chart = Chart.of(pool);
  const existing = chart.node.tryFindChild(PRIORITY_CLASS_ID) as k8s.KubePriorityClass | undefined;
  if (existing) return existing;
  const priorityClass = new k8s.KubePriorityClass(chart, PRIORITY_CLASS_ID, {
    metadata: { name: PLACEHOLDER_PRIORITY_CLASS, labels: { 'app.kubernetes.io/part-of': 'cdk-agents', 'app.kubernetes.io/managed-by': 'cdk8s' } },
    value: PLACEHOLDER_PRIORITY,
    globalDefault: false,
    // A placeholder never evicts anything; it only waits for room.
    preemptionPolicy: 'Never',
    description: 'cdk-agents WarmPool placeholders: room for agent pods, preempted by any of them.',
  });
  // Cluster-scoped: the chart's namespace does not apply.
  if (chart.namespace !== undefined) ApiObject.of(priorityClass).addJsonPatch(JsonPatch.remove('/metadata/namespace'));
  return priorityClass;
}

const CPU = /^(\d+(?:\.\d+)?)(m?)$/;
const BYTES = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
const BYTE_UNITS: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** Requests summed per resource: cpu in millicores, the others in bytes. */
function sumRequests(containers: readonly Json[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const c of containers) {
    for (const [resource, quantity] of Object.entries((c.resources?.requests ?? {}) as Record<string, unknown>)) {
      if (quantity === undefined) continue;
      total[resource] = (total[resource] ?? 0) + parseQuantity(resource, String(quantity), c.name);
    }
  }
  return total;
}

function parseQuantity(resource: string, value: string, container: string): number {
  const m = resource === 'cpu' ? CPU.exec(value) : BYTES.exec(value);
  if (!m) throw new Error(`cannot size placeholders from container '${container}': its ${resource} request '${value}' is not a quantity like 250m, 2, 512Mi or 1Gi.`);
  return resource === 'cpu' ? Number(m[1]) * (m[2] ? 1 : 1000) : Number(m[1]) * BYTE_UNITS[m[2] ?? ''];
}

function formatQuantity(resource: string, amount: number): string {
  return resource === 'cpu' ? `${Math.ceil(amount)}m` : `${Math.ceil(amount / 2 ** 20)}Mi`;
}
