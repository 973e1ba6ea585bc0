/** Replicas, autoscaling and disruption budgets of the emitted Deployments. */
import { Construct } from 'constructs';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';

/** The metric the runtime exports per pod for in-flight LLM requests. */
export const IN_FLIGHT_METRIC = 'llm_requests_in_flight';

/** A HorizontalPodAutoscaler (autoscaling/v2) for the Deployment. */
export interface Autoscaling {
  /** Fewest pods. */
  readonly minReplicas: number;
  /** Most pods. */
  readonly maxReplicas: number;
  /**
   * Average CPU utilization to keep, in percent of the pods' CPU requests.
   * @default 70
   */
  readonly cpuTargetPercent?: number;
  /**
   * Average in-flight LLM requests per pod to keep (HPA Pods metric `llm_requests_in_flight`).
   * Needs a custom metrics adapter (e.g. prometheus-adapter) serving that metric per pod.
   * @default - CPU only
   */
  readonly inFlightTarget?: number;
}

/** Checks replicas and autoscaling; returns the fixed replica count, or undefined when the HPA owns it. */
export function resolveReplicas(owner: string, replicas: number | undefined, autoscaling: Autoscaling | undefined, defaultReplicas: number): number | undefined {
  if (replicas !== undefined && autoscaling) {
    throw new Error(`${owner}: 'replicas' and 'autoscaling' are both set, but the autoscaler owns the replica count. Remove 'replicas' (autoscaling.minReplicas is the floor).`);
  }
  if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1)) {
    throw new Error(`${owner}: 'replicas' (${replicas}) must be a whole number >= 1.`);
  }
  if (autoscaling) {
    const { minReplicas: min, maxReplicas: max, cpuTargetPercent: cpu, inFlightTarget: inFlight } = autoscaling;
    if (!Number.isInteger(min) || min < 1) throw new Error(`${owner}: 'autoscaling.minReplicas' (${min}) must be a whole number >= 1.`);
    if (!Number.isInteger(max) || max < min) {
      throw new Error(`${owner}: 'autoscaling.maxReplicas' (${max}) must be >= 'autoscaling.minReplicas' (${min}). Raise maxReplicas or lower minReplicas.`);
    }
    if (cpu !== undefined && (!Number.isInteger(cpu) || cpu < 1 || cpu > 100)) {
      throw new Error(`${owner}: 'autoscaling.cpuTargetPercent' (${cpu}) must be a whole percentage from 1 to 100.`);
    }
    if (inFlight !== undefined && !(inFlight > 0)) throw new Error(`${owner}: 'autoscaling.inFlightTarget' (${inFlight}) must be positive.`);
    return undefined;
  }
  return replicas ?? defaultReplicas;
}

/** The fewest pods the Deployment runs. */
export function minimumReplicas(replicas: number | undefined, autoscaling: Autoscaling | undefined): number {
  return autoscaling ? autoscaling.minReplicas : replicas!;
}

export interface WorkloadRef {
  readonly name: string;
  readonly namespace?: string;
  readonly labels: Record<string, string>;
  readonly selector: Record<string, string>;
}

/**
 * One pod at a time may be evicted (node drains, cluster upgrades). Crash-looping pods may always
 * be evicted so they never block a drain.
 */
export function disruptionBudget(scope: Construct, id: string, w: WorkloadRef): k8s.KubePodDisruptionBudget {
  return new k8s.KubePodDisruptionBudget(scope, id, {
    metadata: { name: w.name, namespace: w.namespace, labels: w.labels },
    spec: {
      maxUnavailable: k8s.IntOrString.fromNumber(1),
      selector: { matchLabels: w.selector },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  });
}

export function horizontalAutoscaler(scope: Construct, id: string, w: WorkloadRef, a: Autoscaling): k8s.KubeHorizontalPodAutoscalerV2 {
  const metrics: k8s.MetricSpecV2[] = [
    { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: a.cpuTargetPercent ?? 70 } } },
  ];
  if (a.inFlightTarget !== undefined) {
    metrics.push({
      type: 'Pods',
      pods: { metric: { name: IN_FLIGHT_METRIC }, target: { type: 'AverageValue', averageValue: k8s.Quantity.fromString(String(a.inFlightTarget)) } },
    });
  }
  return new k8s.KubeHorizontalPodAutoscalerV2(scope, id, {
    metadata: { name: w.name, namespace: w.namespace, labels: w.labels },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: w.name },
      minReplicas: a.minReplicas,
      maxReplicas: a.maxReplicas,
      metrics,
    },
  });
}
