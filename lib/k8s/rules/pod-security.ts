/**
 * Pod Security Standards "restricted" (which includes "baseline"), Kubernetes 1.28, one rule per
 * control as https://kubernetes.io/docs/concepts/security/pod-security-standards/ lists them, so
 * each control is reported, and suppressed, on its own. Every pod template is checked (Pod,
 * PodTemplate, ReplicationController, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
 * KEDA ScaledJob), init and ephemeral containers included; the pod level covers the containers
 * that do not say otherwise. Windows pods are exempt from the Linux-only controls.
 */
import { asArray, asObject, childPath, containersOf, isWindows, type Json, type PodTemplate } from './manifest';
import { podRule, RuleLevel, type K8sRule, type RuleInfo, type RuleViolation } from './rule';

const restricted = (info: RuleInfo, check: (t: PodTemplate) => RuleViolation[]) => podRule(info, RuleLevel.ERROR, check);

const ALLOWED_VOLUME_TYPES = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
/** Safe sysctls as of the 1.28 policy (net.ipv4.ip_local_reserved_ports since 1.27). */
const SAFE_SYSCTLS = [
  'kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports',
];
const SELINUX_TYPES = new Set(['', 'container_t', 'container_init_t', 'container_kvm_t']);
const SECCOMP_TYPES = new Set(['RuntimeDefault', 'Localhost']);
const APPARMOR_PREFIX = 'container.apparmor.security.beta.kubernetes.io/';

const podSc = (t: PodTemplate) => asObject(t.spec.securityContext);
const podScPath = (t: PodTemplate) => `${t.specPath}.securityContext`;

/** Each container's securityContext with its path. */
function containerContexts(t: PodTemplate): { readonly at: string; readonly scPath: string; readonly container: Json; readonly sc: Json }[] {
  return containersOf(t).map(({ path, container }) => ({ at: path, scPath: `${path}.securityContext`, container, sc: asObject(container.securityContext) }));
}

export const HOST_PROCESS = restricted(
  {
    id: 'AGT-K8S-1',
    name: 'HostProcess',
    explanation: "A Windows HostProcess container runs as a process on the node, with the node's privileges and outside any container isolation.",
    fix: 'Remove windowsOptions.hostProcess (or set it to false) on the pod and its containers.',
  },
  (t) => {
    const found: RuleViolation[] = [];
    if (asObject(podSc(t).windowsOptions).hostProcess === true) found.push({ path: `${podScPath(t)}.windowsOptions.hostProcess`, problem: 'must not be true' });
    for (const { scPath, sc } of containerContexts(t)) {
      if (asObject(sc.windowsOptions).hostProcess === true) found.push({ path: `${scPath}.windowsOptions.hostProcess`, problem: 'must not be true' });
    }
    return found;
  },
);

export const HOST_NAMESPACES = restricted(
  {
    id: 'AGT-K8S-2',
    name: 'Host Namespaces',
    explanation: "Sharing the node's network, PID or IPC namespace lets the pod see and reach the node's traffic, processes and shared memory.",
    fix: 'Remove hostNetwork, hostPID and hostIPC (or set them to false); expose the pod through a Service.',
  },
  (t) => ['hostNetwork', 'hostPID', 'hostIPC'].filter((f) => t.spec[f] === true).map((f) => ({ path: `${t.specPath}.${f}`, problem: 'must not be true' })),
);

export const PRIVILEGED = restricted(
  {
    id: 'AGT-K8S-3',
    name: 'Privileged Containers',
    explanation: 'A privileged container has every device and capability of the node: it is root on the node.',
    fix: 'Remove securityContext.privileged (or set it to false).',
  },
  (t) => containerContexts(t).filter(({ sc }) => sc.privileged === true).map(({ scPath }) => ({ path: `${scPath}.privileged`, problem: 'must not be true' })),
);

export const CAPABILITIES = restricted(
  {
    id: 'AGT-K8S-4',
    name: 'Capabilities',
    explanation: 'Linux capabilities are pieces of root (raw sockets, mounts, tracing other processes); a container needs none but, at most, binding a low port.',
    fix: "Set securityContext.capabilities.drop: ['ALL'] in every container and add back nothing but NET_BIND_SERVICE.",
  },
  (t) => {
    if (isWindows(t)) return [];
    const found: RuleViolation[] = [];
    for (const { scPath, sc } of containerContexts(t)) {
      const caps = asObject(sc.capabilities);
      if (!asArray(caps.drop).includes('ALL')) found.push({ path: `${scPath}.capabilities.drop`, problem: 'must include ALL' });
      asArray(caps.add).forEach((cap, i) => {
        if (cap !== 'NET_BIND_SERVICE') found.push({ path: `${scPath}.capabilities.add[${i}]`, problem: `${JSON.stringify(cap)} is not allowed (only NET_BIND_SERVICE)` });
      });
    }
    return found;
  },
);

export const HOST_PATH_VOLUMES = restricted(
  {
    id: 'AGT-K8S-5',
    name: 'HostPath Volumes',
    explanation: "A hostPath volume exposes the node's filesystem (its credentials, the container runtime's socket) to the pod.",
    fix: 'Use an emptyDir, a ConfigMap or Secret, or a PersistentVolumeClaim instead.',
  },
  (t) =>
    asArray(t.spec.volumes)
      .map((v, i) => ({ v: asObject(v), i }))
      .filter(({ v }) => v.hostPath !== undefined)
      .map(({ i }) => ({ path: `${t.specPath}.volumes[${i}].hostPath`, problem: 'hostPath volumes are not allowed' })),
);

export const HOST_PORTS = restricted(
  {
    id: 'AGT-K8S-6',
    name: 'Host Ports',
    explanation: "A hostPort listens on the node's own address, around the Service and the pod's NetworkPolicy.",
    fix: 'Remove hostPort and reach the port through a Service.',
  },
  (t) => {
    const found: RuleViolation[] = [];
    for (const { at, container } of containerContexts(t)) {
      asArray(container.ports).forEach((p, i) => {
        const hostPort = asObject(p).hostPort;
        if (hostPort !== undefined && hostPort !== 0) found.push({ path: `${at}.ports[${i}].hostPort`, problem: 'must not be set' });
      });
    }
    return found;
  },
);

export const APPARMOR = restricted(
  {
    id: 'AGT-K8S-7',
    name: 'AppArmor',
    explanation: "An unconfined AppArmor profile removes the kernel's confinement of the container.",
    fix: 'Remove the annotation, or set it to runtime/default or localhost/<profile>.',
  },
  (t) =>
    Object.entries(asObject(t.meta.annotations))
      .filter(([key, value]) => key.startsWith(APPARMOR_PREFIX) && value !== 'runtime/default' && !String(value).startsWith('localhost/'))
      .map(([key, value]) => ({
        path: childPath(`${t.metaPath}.annotations`, key),
        problem: `must be runtime/default or localhost/*, not ${JSON.stringify(value)}`,
      })),
);

export const SELINUX = restricted(
  {
    id: 'AGT-K8S-8',
    name: 'SELinux',
    explanation: 'A custom SELinux type, user or role can lift the container out of its SELinux confinement.',
    fix: 'Remove seLinuxOptions, or keep its type to container_t, container_init_t or container_kvm_t and leave user and role unset.',
  },
  (t) => {
    const found: RuleViolation[] = [];
    const check = (options: unknown, where: string) => {
      const o = asObject(options);
      if (o.type !== undefined && !SELINUX_TYPES.has(String(o.type))) {
        found.push({ path: `${where}.seLinuxOptions.type`, problem: `${JSON.stringify(o.type)} is not one of container_t, container_init_t, container_kvm_t` });
      }
      for (const field of ['user', 'role']) {
        if (o[field] !== undefined && o[field] !== '') found.push({ path: `${where}.seLinuxOptions.${field}`, problem: 'must not be set' });
      }
    };
    check(podSc(t).seLinuxOptions, podScPath(t));
    for (const { scPath, sc } of containerContexts(t)) check(sc.seLinuxOptions, scPath);
    return found;
  },
);

export const PROC_MOUNT = restricted(
  {
    id: 'AGT-K8S-9',
    name: '/proc Mount Type',
    explanation: 'An unmasked /proc exposes kernel interfaces the container runtime otherwise hides from containers.',
    fix: 'Remove securityContext.procMount (or set it to Default).',
  },
  (t) =>
    containerContexts(t)
      .filter(({ sc }) => sc.procMount !== undefined && sc.procMount !== 'Default')
      .map(({ scPath, sc }) => ({ path: `${scPath}.procMount`, problem: `must be Default, not ${JSON.stringify(sc.procMount)}` })),
);

export const SECCOMP = restricted(
  {
    id: 'AGT-K8S-10',
    name: 'Seccomp',
    explanation: 'Without a seccomp profile every system call is open to the container, those kernel exploits use included.',
    fix: 'Set securityContext.seccompProfile.type: RuntimeDefault on the pod (or Localhost, with a profile, per container).',
  },
  (t) => {
    if (isWindows(t)) return [];
    const found: RuleViolation[] = [];
    const podType = asObject(podSc(t).seccompProfile).type;
    if (podType !== undefined && !SECCOMP_TYPES.has(String(podType))) {
      found.push({ path: `${podScPath(t)}.seccompProfile.type`, problem: `must be RuntimeDefault or Localhost, not ${JSON.stringify(podType)}` });
    }
    for (const { scPath, sc } of containerContexts(t)) {
      const type = asObject(sc.seccompProfile).type;
      if (type !== undefined && !SECCOMP_TYPES.has(String(type))) {
        found.push({ path: `${scPath}.seccompProfile.type`, problem: `must be RuntimeDefault or Localhost, not ${JSON.stringify(type)}` });
      } else if (type === undefined && !SECCOMP_TYPES.has(String(podType))) {
        found.push({ path: `${scPath}.seccompProfile.type`, problem: `must be RuntimeDefault or Localhost here or in ${podScPath(t)}` });
      }
    }
    return found;
  },
);

export const SYSCTLS = restricted(
  {
    id: 'AGT-K8S-11',
    name: 'Sysctls',
    explanation: "Sysctls outside the safe set change kernel settings shared with the node's other pods.",
    fix: `Remove the sysctl; only these are safe: ${SAFE_SYSCTLS.join(', ')}.`,
  },
  (t) =>
    asArray(podSc(t).sysctls)
      .map((s, i) => ({ name: asObject(s).name, i }))
      .filter(({ name }) => !SAFE_SYSCTLS.includes(String(name)))
      .map(({ name, i }) => ({ path: `${podScPath(t)}.sysctls[${i}].name`, problem: `${JSON.stringify(name)} is not a safe sysctl` })),
);

export const VOLUME_TYPES = restricted(
  {
    id: 'AGT-K8S-12',
    name: 'Volume Types',
    explanation: "Volume types other than configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected and secret reach node or network storage directly, around the cluster's access control.",
    fix: 'Use a PersistentVolumeClaim (or another allowed type) instead.',
  },
  (t) => {
    const found: RuleViolation[] = [];
    asArray(t.spec.volumes).forEach((v, i) => {
      // hostPath is its own control (AGT-K8S-5): reported once, there.
      for (const type of Object.keys(asObject(v)).filter((k) => k !== 'name' && k !== 'hostPath')) {
        if (!ALLOWED_VOLUME_TYPES.includes(type)) found.push({ path: `${t.specPath}.volumes[${i}].${type}`, problem: `volume type ${type} is not allowed` });
      }
    });
    return found;
  },
);

export const PRIVILEGE_ESCALATION = restricted(
  {
    id: 'AGT-K8S-13',
    name: 'Privilege Escalation',
    explanation: 'Unless allowPrivilegeEscalation is false, a process can gain more privileges than its parent (through setuid binaries).',
    fix: 'Set securityContext.allowPrivilegeEscalation: false in every container.',
  },
  (t) => (isWindows(t) ? [] : containerContexts(t).filter(({ sc }) => sc.allowPrivilegeEscalation !== false).map(({ scPath }) => ({ path: `${scPath}.allowPrivilegeEscalation`, problem: 'must be false' }))),
);

export const RUN_AS_NON_ROOT = restricted(
  {
    id: 'AGT-K8S-14',
    name: 'Running as Non-root',
    explanation: 'A container running as root is one kernel bug or misconfigured mount away from root on the node.',
    fix: 'Set securityContext.runAsNonRoot: true on the pod (and use an image with a non-root USER).',
  },
  (t) => {
    const found: RuleViolation[] = [];
    const podNonRoot = podSc(t).runAsNonRoot;
    if (podNonRoot === false) found.push({ path: `${podScPath(t)}.runAsNonRoot`, problem: 'must not be false' });
    for (const { scPath, sc } of containerContexts(t)) {
      if (sc.runAsNonRoot === false) found.push({ path: `${scPath}.runAsNonRoot`, problem: 'must not be false' });
      else if (sc.runAsNonRoot !== true && podNonRoot !== true) found.push({ path: `${scPath}.runAsNonRoot`, problem: `must be true here or in ${podScPath(t)}` });
    }
    return found;
  },
);

export const RUN_AS_USER = restricted(
  {
    id: 'AGT-K8S-15',
    name: 'Running as Non-root user',
    explanation: 'runAsUser: 0 runs the container as root whatever its image says.',
    fix: 'Set runAsUser to a non-zero uid (e.g. 1000), or remove it to run as the image\'s non-root USER.',
  },
  (t) => {
    const found: RuleViolation[] = [];
    if (podSc(t).runAsUser === 0) found.push({ path: `${podScPath(t)}.runAsUser`, problem: 'must not be 0' });
    for (const { scPath, sc } of containerContexts(t)) {
      if (sc.runAsUser === 0) found.push({ path: `${scPath}.runAsUser`, problem: 'must not be 0' });
    }
    return found;
  },
);

/** The 15 controls of "restricted", in the order the Pod Security Standards list them. */
export const POD_SECURITY_RULES: readonly K8sRule[] = [
  HOST_PROCESS, HOST_NAMESPACES, PRIVILEGED, CAPABILITIES, HOST_PATH_VOLUMES, HOST_PORTS, APPARMOR, SELINUX,
  PROC_MOUNT, SECCOMP, SYSCTLS, VOLUME_TYPES, PRIVILEGE_ESCALATION, RUN_AS_NON_ROOT, RUN_AS_USER,
];
