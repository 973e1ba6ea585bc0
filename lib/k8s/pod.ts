/**
 * Pod pieces every emitted workload shares: Pod Security Standards "restricted" with a
 * read-only root filesystem, resources, spreading, and the checksum that rolls pods on a
 * config change.
 */
import { createHash } from 'node:crypto';
import { Size } from 'cdk8s';
import type { ContainerResources } from 'cdk8s-plus-28';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';

/** The pod template annotation whose change rolls the pods when config, prompt, tools or bundle change. */
export const CHECKSUM_ANNOTATION = 'cdk-agents.dev/config-checksum';

export function sha256(...parts: string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(`${Buffer.byteLength(part)}:`).update(part);
  return hash.digest('hex');
}

export function podSecurityContext(fsGroup: number): k8s.PodSecurityContext {
  return {
    runAsNonRoot: true,
    seccompProfile: { type: 'RuntimeDefault' },
    // Secret files are mounted 0440: group-readable by this group only.
    fsGroup,
    fsGroupChangePolicy: 'OnRootMismatch',
  };
}

export function containerSecurityContext(user: number, group: number): k8s.SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: user,
    runAsGroup: group,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  };
}

/** The only writable path of a container, bounded so a runaway process cannot fill the node's disk. */
export function tmpVolume(name: string, sizeLimit: Size): k8s.Volume {
  return { name, emptyDir: { sizeLimit: k8s.Quantity.fromString(`${sizeLimit.toMebibytes()}Mi`) } };
}

/**
 * Spread over zones when possible (ScheduleAnyway: a zone outage or a one-zone cluster must not
 * block scheduling) and strictly over nodes (DoNotSchedule: a node drain never takes two replicas
 * at once). Counted per ReplicaSet (pod-template-hash) so a rollout is not blocked by old pods.
 */
export function topologySpread(selector: Record<string, string>): k8s.TopologySpreadConstraint[] {
  return [
    {
      topologyKey: 'topology.kubernetes.io/zone',
      maxSkew: 1,
      whenUnsatisfiable: 'ScheduleAnyway',
      labelSelector: { matchLabels: selector },
      matchLabelKeys: ['pod-template-hash'],
    },
    {
      topologyKey: 'kubernetes.io/hostname',
      maxSkew: 1,
      whenUnsatisfiable: 'DoNotSchedule',
      labelSelector: { matchLabels: selector },
      matchLabelKeys: ['pod-template-hash'],
    },
  ];
}

/** Container resources: the given fields over the defaults, each field on its own. */
export function kubeResources(prop: string, given: ContainerResources | undefined, defaults: ContainerResources): k8s.ResourceRequirements {
  const cpuRequest = given?.cpu?.request ?? defaults.cpu?.request;
  const cpuLimit = given?.cpu?.limit ?? defaults.cpu?.limit;
  const memRequest = given?.memory?.request ?? defaults.memory?.request;
  const memLimit = given?.memory?.limit ?? defaults.memory?.limit;
  const diskRequest = given?.ephemeralStorage?.request ?? defaults.ephemeralStorage?.request;
  const diskLimit = given?.ephemeralStorage?.limit ?? defaults.ephemeralStorage?.limit;
  if (cpuRequest && cpuLimit && millicores(cpuRequest.amount) > millicores(cpuLimit.amount)) {
    throw new Error(`'${prop}': the cpu request (${cpuRequest.amount}) is above its limit (${cpuLimit.amount}). Lower the request or raise the limit.`);
  }
  if (memRequest && memLimit && memRequest.toMebibytes() > memLimit.toMebibytes()) {
    throw new Error(`'${prop}': the memory request (${memRequest.toMebibytes()}Mi) is above its limit (${memLimit.toMebibytes()}Mi). Lower the request or raise the limit.`);
  }
  const mebi = (size: Size) => k8s.Quantity.fromString(`${size.toMebibytes()}Mi`);
  const requests: Record<string, k8s.Quantity> = {};
  const limits: Record<string, k8s.Quantity> = {};
  if (cpuRequest) requests.cpu = k8s.Quantity.fromString(cpuRequest.amount);
  if (memRequest) requests.memory = mebi(memRequest);
  if (diskRequest) requests['ephemeral-storage'] = mebi(diskRequest);
  if (cpuLimit) limits.cpu = k8s.Quantity.fromString(cpuLimit.amount);
  if (memLimit) limits.memory = mebi(memLimit);
  if (diskLimit) limits['ephemeral-storage'] = mebi(diskLimit);
  return { requests, limits };
}

function millicores(amount: string): number {
  return amount.endsWith('m') ? Number(amount.slice(0, -1)) : Number(amount) * 1000;
}
