/**
 * AgentMonitoring: Prometheus Operator monitors for the runtime's /metrics on the admin port
 * (`metrics`, 8788). A PodMonitor per agent (an agent may have no Service, and the agent's own
 * Service does not carry the sidecar's port), a ServiceMonitor per gateway (its Service has the
 * `metrics` port). Each sets the scrape job to the workload's name, which AgentAlerts and the
 * dashboards rely on, and opens the workload's NetworkPolicy to Prometheus on 8788.
 */
import type { Duration } from 'cdk8s';
import type * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { PodMonitor, PodMonitorSpecPodMetricsEndpointsScheme } from '../imports/monitoring.coreos.com_podmonitors';
import { ServiceMonitor, ServiceMonitorSpecEndpointsScheme } from '../imports/monitoring.coreos.com_servicemonitors';
import { AgentService } from './agent-service';
import { checkLabels } from './alerts';
import { LlmGateway } from './llm-gateway';
import { commonLabels } from './names';
import { ADMIN_PORT_NAME } from './runtime-container';

/** The pod label whose value becomes the scrape job: the workload's name. */
export const JOB_LABEL = 'app.kubernetes.io/name';

/** Props of AgentMonitoring. */
export interface AgentMonitoringProps {
  /**
   * The Prometheus pods (`Pods.select(...)` with their namespace): each monitored workload's
   * NetworkPolicy lets them in on the admin port 8788, which is closed to everyone else.
   */
  readonly prometheus: kplus.INetworkPolicyPeer;
  /**
   * Labels on every PodMonitor and ServiceMonitor. Prometheus picks monitors up by label:
   * kube-prometheus-stack's only those labelled with its release (`{ release: 'kube-prometheus-stack' }`).
   * @default - none (a Prometheus whose podMonitorSelector and serviceMonitorSelector are empty)
   */
  readonly labels?: { readonly [key: string]: string };
  /**
   * How often Prometheus scrapes each pod.
   * @default - Prometheus' scrapeInterval (30s in kube-prometheus-stack)
   */
  readonly interval?: Duration;
  /**
   * How long a scrape may take; at most `interval`.
   * @default - Prometheus' scrapeTimeout
   */
  readonly scrapeTimeout?: Duration;
  /**
   * Agents to monitor (one PodMonitor each). More with `monitor()`.
   * @default - none
   */
  readonly agents?: AgentService[];
  /**
   * Gateways to monitor (one ServiceMonitor each). More with `monitor()`.
   * @default - none
   */
  readonly gateways?: LlmGateway[];
}

/** A workload monitored twice would have every series scraped twice, and every sum doubled. */
const MONITORED = new WeakMap<AgentService | LlmGateway, AgentMonitoring>();

/** Prometheus scrapes of the runtime's metrics, for agents and gateways. */
export class AgentMonitoring extends Construct {
  private readonly owner: string;
  private readonly props: AgentMonitoringProps;
  private readonly labels: Record<string, string>;
  private readonly endpoint: { interval?: string; scrapeTimeout?: string };
  private readonly _podMonitors: PodMonitor[] = [];
  private readonly _serviceMonitors: ServiceMonitor[] = [];

  constructor(scope: Construct, id: string, props: AgentMonitoringProps) {
    super(scope, id);
    this.owner = `AgentMonitoring '${this.node.path}'`;
    this.props = props;
    if (!props.prometheus) {
      throw new Error(`${this.owner}: 'prometheus' is required: the Prometheus pods the workloads' NetworkPolicies must let in on 8788 (Pods.select(...)).`);
    }
    this.labels = checkLabels(this.owner, props.labels);
    const interval = props.interval?.toSeconds({ integral: false });
    const timeout = props.scrapeTimeout?.toSeconds({ integral: false });
    if (interval !== undefined && (!Number.isInteger(interval) || interval < 1)) {
      throw new Error(`${this.owner}: 'interval' (${interval}s) must be a whole number of seconds, at least 1.`);
    }
    if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1)) {
      throw new Error(`${this.owner}: 'scrapeTimeout' (${timeout}s) must be a whole number of seconds, at least 1.`);
    }
    if (interval !== undefined && timeout !== undefined && timeout > interval) {
      throw new Error(`${this.owner}: 'scrapeTimeout' (${timeout}s) must be at most 'interval' (${interval}s); Prometheus refuses the scrape config otherwise.`);
    }
    this.endpoint = {
      interval: interval !== undefined ? `${interval}s` : undefined,
      scrapeTimeout: timeout !== undefined ? `${timeout}s` : undefined,
    };
    for (const agent of props.agents ?? []) this.monitor(agent);
    for (const gateway of props.gateways ?? []) this.monitor(gateway);
  }

  /** The PodMonitors, one per monitored agent. */
  public get podMonitors(): PodMonitor[] {
    return [...this._podMonitors];
  }

  /** The ServiceMonitors, one per monitored gateway. */
  public get serviceMonitors(): ServiceMonitor[] {
    return [...this._serviceMonitors];
  }

  /** Scrapes the agent's sidecars (a PodMonitor named after the agent, in its namespace) and lets Prometheus in on 8788. */
  public monitor(agent: AgentService): PodMonitor;
  /** Scrapes the gateway's pods through its Service (a ServiceMonitor named after it) and lets Prometheus in on 8788. */
  public monitor(gateway: LlmGateway): ServiceMonitor;
  public monitor(target: AgentService | LlmGateway): PodMonitor | ServiceMonitor {
    if (!(target instanceof AgentService) && !(target instanceof LlmGateway)) {
      throw new Error(`${this.owner}: monitor() takes an AgentService or an LlmGateway.`);
    }
    const existing = MONITORED.get(target);
    const kind = target.constructor.name;
    if (existing) {
      throw new Error(
        `${this.owner}: ${kind} '${target.name}' is already monitored by ${existing.owner}; a second monitor would scrape every series twice and double every sum. Monitor it once.`,
      );
    }
    const id = `${target instanceof AgentService ? 'Agent' : 'Gateway'}-${target.node.addr}`;
    const metadata = {
      name: target.name,
      namespace: target.namespace,
      labels: { ...commonLabels(target.name, 'monitoring'), ...this.labels },
    };
    const namespaceSelector = target.namespace ? { matchNames: [target.namespace] } : undefined;
    let created: PodMonitor | ServiceMonitor;
    if (target instanceof AgentService) {
      created = new PodMonitor(this, id, {
        metadata,
        spec: {
          selector: { matchLabels: { ...target.selectorLabels } },
          namespaceSelector,
          jobLabel: JOB_LABEL,
          podMetricsEndpoints: [{ port: ADMIN_PORT_NAME, path: '/metrics', scheme: PodMonitorSpecPodMetricsEndpointsScheme.HTTP, ...this.endpoint }],
        },
      });
      this._podMonitors.push(created);
    } else {
      created = new ServiceMonitor(this, id, {
        metadata,
        spec: {
          selector: { matchLabels: { ...target.selectorLabels } },
          namespaceSelector,
          jobLabel: JOB_LABEL,
          endpoints: [{ port: ADMIN_PORT_NAME, path: '/metrics', scheme: ServiceMonitorSpecEndpointsScheme.HTTP, ...this.endpoint }],
        },
      });
      this._serviceMonitors.push(created);
    }
    target.allowAdminFrom(this.props.prometheus);
    MONITORED.set(target, this);
    return created;
  }
}
