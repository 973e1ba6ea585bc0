/**
 * Reliability: bounded resources, probes, and replicated workloads that survive a node drain or
 * the loss of a node (a PodDisruptionBudget and spreading).
 */
import { apiGroup, asArray, asObject, containersOf, isObject, isSidecarInit, labelsOf, nameOf, namespaceOf, selects, type Json, type PodTemplate } from './manifest';
import { podRule, RuleLevel, type RuleContext, type RuleInfo, type RuleViolation } from './rule';

export const RESOURCES = podRule(
  {
    id: 'AGT-K8S-19',
    name: 'Requests and limits',
    explanation: "Without requests the scheduler places pods as if they needed nothing; without a memory limit one runaway process (an agent looping over ever larger contexts) takes the node's memory from every other pod.",
    fix: 'Set resources.requests.cpu, resources.requests.memory and resources.limits.memory on every container.',
  },
  RuleLevel.ERROR,
  // Ephemeral containers cannot have resources; a request left out defaults to the limit.
  (t) =>
    containersOf(t, ['initContainers', 'containers']).flatMap(({ path, container }) => {
      const resources = asObject(container.resources);
      const requests = asObject(resources.requests);
      const limits = asObject(resources.limits);
      const found: RuleViolation[] = [];
      if (requests.cpu === undefined && limits.cpu === undefined) {
        found.push({ path: `${path}.resources.requests.cpu`, problem: 'is not set (nor a cpu limit it would default to)' });
      }
      if (requests.memory === undefined && limits.memory === undefined) {
        found.push({ path: `${path}.resources.requests.memory`, problem: 'is not set (nor a memory limit it would default to)' });
      }
      if (limits.memory === undefined) found.push({ path: `${path}.resources.limits.memory`, problem: 'is not set: the container may use all the memory of its node' });
      return found;
    }),
);

export const PROBES = podRule(
  {
    id: 'AGT-K8S-20',
    name: 'Liveness and readiness probes',
    explanation: 'Without a liveness probe a hung process is never restarted; without a readiness probe a pod gets traffic, and counts as available in a rollout, before it can serve.',
    fix: 'Add a livenessProbe and a readinessProbe (httpGet on a health endpoint, else tcpSocket or exec) to every long-running container.',
  },
  RuleLevel.WARNING,
  // Jobs run to completion; init containers too, except sidecars (restartPolicy: Always).
  (t) =>
    !t.longRunning
      ? []
      : containersOf(t, ['initContainers', 'containers'])
          .filter((c) => c.list === 'containers' || isSidecarInit(c))
          .flatMap(({ path, container }) => {
            const found: RuleViolation[] = [];
            if (!isObject(container.livenessProbe)) found.push({ path: `${path}.livenessProbe`, problem: 'is not set: a hung container is never restarted' });
            if (!isObject(container.readinessProbe)) found.push({ path: `${path}.readinessProbe`, problem: 'is not set: the pod is sent traffic as soon as it starts' });
            return found;
          }),
);

interface MinimumReplicas {
  readonly count: number;
  /** Where the count comes from: `spec.replicas`, `HorizontalPodAutoscaler agents/x spec.minReplicas`. */
  readonly from: string;
}

/** The fewest pods a Deployment or StatefulSet runs: its autoscaler's minimum, else its replicas. */
function minimumReplicas(object: Json, context: RuleContext): MinimumReplicas {
  const namespace = namespaceOf(object);
  const name = nameOf(object);
  const hpa = context.find('autoscaling', 'HorizontalPodAutoscaler', namespace).find((h) => {
    const ref = asObject(asObject(h.spec).scaleTargetRef);
    return ref.kind === object.kind && ref.name === name && (ref.apiVersion === undefined || apiGroup(ref) === 'apps');
  });
  if (hpa) {
    const min = asObject(hpa.spec).minReplicas;
    return { count: typeof min === 'number' ? min : 1, from: `${context.describe(hpa)} spec.minReplicas` };
  }
  // KEDA scales a Deployment unless scaleTargetRef says otherwise; its minimum defaults to 0.
  const scaledObject = context.find('keda.sh', 'ScaledObject', namespace).find((s) => {
    const ref = asObject(asObject(s.spec).scaleTargetRef);
    return (ref.kind ?? 'Deployment') === object.kind && ref.name === name;
  });
  if (scaledObject) {
    const min = asObject(scaledObject.spec).minReplicaCount;
    return { count: typeof min === 'number' ? min : 0, from: `${context.describe(scaledObject)} spec.minReplicaCount` };
  }
  const replicas = asObject(object.spec).replicas;
  return { count: typeof replicas === 'number' ? replicas : 1, from: 'spec.replicas' };
}

/** A rule on Deployments and StatefulSets that always run more than one pod. */
function replicatedRule(
  info: RuleInfo,
  check: (t: PodTemplate, replicas: MinimumReplicas, object: Json, context: RuleContext) => RuleViolation[],
) {
  return podRule(info, RuleLevel.WARNING, (t, object, context) => {
    if (apiGroup(object) !== 'apps' || (object.kind !== 'Deployment' && object.kind !== 'StatefulSet')) return [];
    const replicas = minimumReplicas(object, context);
    return replicas.count > 1 ? check(t, replicas, object, context) : [];
  });
}

/** Pods a PodDisruptionBudget lets the eviction API take when `replicas` run; rounded up, as the disruption controller does. */
function allowedEvictions(pdb: Json, replicas: number): number {
  const spec = asObject(pdb.spec);
  const count = (value: unknown): number | undefined => {
    if (typeof value === 'number') return value;
    const percent = typeof value === 'string' ? /^(\d+)%$/.exec(value) : null;
    return percent ? Math.ceil((Number(percent[1]) * replicas) / 100) : undefined;
  };
  const maxUnavailable = count(spec.maxUnavailable);
  if (maxUnavailable !== undefined) return maxUnavailable;
  const minAvailable = count(spec.minAvailable);
  return minAvailable !== undefined ? replicas - minAvailable : replicas;
}

function inNamespace(namespace: string | undefined): string {
  return namespace === undefined ? 'without a namespace' : `in namespace ${namespace}`;
}

export const DISRUPTION_BUDGET = replicatedRule(
  {
    id: 'AGT-K8S-21',
    name: 'PodDisruptionBudget',
    explanation: 'Without a PodDisruptionBudget a node drain or cluster upgrade may evict every replica at once; with one that allows no eviction, drains hang.',
    fix: 'Add a PodDisruptionBudget selecting the pods with maxUnavailable: 1 (and unhealthyPodEvictionPolicy: AlwaysAllow).',
  },
  (t, replicas, object, context) => {
    const labels = labelsOf(t.meta);
    const namespace = namespaceOf(object);
    const budgets = context.find('policy', 'PodDisruptionBudget', namespace).filter((p) => selects(asObject(p.spec).selector, labels));
    const path = `${t.metaPath}.labels`;
    if (budgets.length === 0) {
      return [{ path, problem: `no PodDisruptionBudget ${inNamespace(namespace)} selects these pods, though at least ${replicas.count} run (${replicas.from})` }];
    }
    if (budgets.every((b) => allowedEvictions(b, replicas.count) < 1)) {
      return [{ path, problem: `${budgets.map((b) => context.describe(b)).join(', ')} allows no eviction at ${replicas.count} replicas (${replicas.from}): node drains wait for ever` }];
    }
    return [];
  },
);

export const SPREAD = replicatedRule(
  {
    id: 'AGT-K8S-22',
    name: 'Spread replicas',
    explanation: 'Replicas the scheduler may place on one node (or in one zone) all go down with it.',
    fix: 'Add topologySpreadConstraints on kubernetes.io/hostname (and topology.kubernetes.io/zone) whose labelSelector matches the pods, or a podAntiAffinity.',
  },
  (t, replicas) => {
    const labels = labelsOf(t.meta);
    const spread = asArray(t.spec.topologySpreadConstraints).some((c) => selects(asObject(c).labelSelector, labels));
    const antiAffinity = asObject(asObject(t.spec.affinity).podAntiAffinity);
    const apart =
      asArray(antiAffinity.requiredDuringSchedulingIgnoredDuringExecution).some((term) => selects(asObject(term).labelSelector, labels)) ||
      asArray(antiAffinity.preferredDuringSchedulingIgnoredDuringExecution).some((w) => selects(asObject(asObject(w).podAffinityTerm).labelSelector, labels));
    if (spread || apart) return [];
    return [{
      path: `${t.specPath}.topologySpreadConstraints`,
      problem: `no topology spread constraint or podAntiAffinity selects these pods: all ${replicas.count} replicas (${replicas.from}) may land on one node`,
    }];
  },
);

export const RELIABILITY_RULES = [RESOURCES, PROBES, DISRUPTION_BUDGET, SPREAD];
