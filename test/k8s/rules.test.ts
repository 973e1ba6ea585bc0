/**
 * The Kubernetes rule pack on plain objects: a hardened agent platform (schema-valid) passes every
 * rule; each rule catches its own violation, and only its own, with the object, the path and the
 * problem; then the semantics each rule depends on: defaults (policyTypes, requests, replicas),
 * label selectors, autoscalers, CIDR excepts, Windows and Job exemptions.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkManifests, K8S_RULES, NON_INTERNET_RANGES, PRIVATE_EGRESS_ANNOTATION, RuleLevel, type K8sFinding } from '../../lib';
import { nonInternetReach } from '../../lib/k8s/rules/cidr';
import { validateManifests } from '../support/k8s-validate';
import type { Json } from './helpers';

const NS = 'agents';
const SELECTOR = { 'app.kubernetes.io/name': 'support-chat', 'app.kubernetes.io/component': 'agent' };
const LABELS = { ...SELECTOR, 'app.kubernetes.io/part-of': 'cdk-agents' };
const D = 'Deployment agents/support-chat';
const NP = 'NetworkPolicy agents/support-chat';
const T = 'spec.template.spec';
const C = `${T}.containers[0]`;

function hardenedContainer(name: string, image: string): Json {
  return {
    name,
    image,
    ports: [{ name: 'http', containerPort: 8080 }],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
    livenessProbe: { httpGet: { path: '/healthz', port: 'http' } },
    readinessProbe: { httpGet: { path: '/readyz', port: 'http' } },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
  };
}

/** An agent Deployment with everything the pack asks for, and the objects around it. */
function platform(): Json[] {
  const metadata = (name = 'support-chat') => ({ name, namespace: NS, labels: LABELS });
  // Cloned: cases change labels and selectors in place.
  return structuredClone([
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata(), automountServiceAccountToken: false },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: metadata(),
      spec: {
        replicas: 2,
        selector: { matchLabels: SELECTOR },
        template: {
          metadata: { labels: LABELS },
          spec: {
            serviceAccountName: 'support-chat',
            automountServiceAccountToken: false,
            securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
            topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: SELECTOR } }],
            containers: [hardenedContainer('agent', 'ghcr.io/acme/support-chat:1.4.2')],
            volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }],
          },
        },
      },
    },
    { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: metadata(), spec: { maxUnavailable: 1, selector: { matchLabels: SELECTOR } } },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: metadata(),
      spec: {
        podSelector: { matchLabels: SELECTOR },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }], ports: [{ port: 8080, protocol: 'TCP' }] }],
        egress: [
          {
            to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
            ports: [{ port: 53, protocol: 'UDP' }],
          },
          { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: [...NON_INTERNET_RANGES] } }], ports: [{ port: 443, protocol: 'TCP' }] },
        ],
      },
    },
  ]);
}

const of = (objects: Json[], kind: string): Json => objects.find((o) => o.kind === kind)!;
const pod = (objects: Json[]): Json => of(objects, 'Deployment').spec.template.spec;
const agent = (objects: Json[]): Json => pod(objects).containers[0];

/** Findings as `ID Object: path: problem`, the parts a reader acts on. */
function found(objects: unknown[]): string[] {
  return checkManifests(objects).map((f) => `${f.ruleId} ${f.object}: ${f.path}: ${f.problem}`);
}

/** The objects after `spoil`, for one-off cases. */
function spoiled(spoil: (objects: Json[]) => void): Json[] {
  const objects = platform();
  spoil(objects);
  return objects;
}

test('the hardened platform is valid for Kubernetes 1.28 and passes every rule', () => {
  const objects = platform();
  expect(validateManifests(objects)).toEqual([]);
  expect(checkManifests(objects)).toEqual([]);
});

test('every rule has an id in sequence, a name, a level, a one-sentence explanation and a fix', () => {
  expect(K8S_RULES.map((r) => r.id)).toEqual(Array.from({ length: 24 }, (_, i) => `AGT-K8S-${i + 1}`));
  for (const rule of K8S_RULES) {
    expect(rule.name).toMatch(/^\S.{2,40}$/);
    expect([RuleLevel.ERROR, RuleLevel.WARNING]).toContain(rule.level);
    expect(rule.explanation).toMatch(/^[A-Z/a-z].{30,}\.$/);
    expect(rule.fix).toMatch(/^[A-Z].{20,}\.$/);
  }
  expect(K8S_RULES.filter((r) => r.level === RuleLevel.WARNING).map((r) => r.id)).toEqual(['AGT-K8S-20', 'AGT-K8S-21', 'AGT-K8S-22']);
});

describe('each rule catches its violation, and no other rule fires', () => {
  const sc = (objects: Json[]) => agent(objects).securityContext;
  const podSc = (objects: Json[]) => pod(objects).securityContext;
  const cases: [string, string, (objects: Json[]) => void, string[]][] = [
    ['AGT-K8S-1', 'a HostProcess container', (o) => { sc(o).windowsOptions = { hostProcess: true }; },
      [`AGT-K8S-1 ${D}: ${C}.securityContext.windowsOptions.hostProcess: must not be true`]],
    ['AGT-K8S-2', 'hostNetwork', (o) => { pod(o).hostNetwork = true; }, [`AGT-K8S-2 ${D}: ${T}.hostNetwork: must not be true`]],
    ['AGT-K8S-3', 'a privileged container', (o) => { sc(o).privileged = true; }, [`AGT-K8S-3 ${D}: ${C}.securityContext.privileged: must not be true`]],
    ['AGT-K8S-4', 'an added capability', (o) => { sc(o).capabilities.add = ['NET_ADMIN']; },
      [`AGT-K8S-4 ${D}: ${C}.securityContext.capabilities.add[0]: "NET_ADMIN" is not allowed (only NET_BIND_SERVICE)`]],
    ['AGT-K8S-5', 'a hostPath volume (reported once, not also as a volume type)', (o) => { pod(o).volumes.push({ name: 'docker', hostPath: { path: '/var/run/docker.sock' } }); },
      [`AGT-K8S-5 ${D}: ${T}.volumes[1].hostPath: hostPath volumes are not allowed`]],
    ['AGT-K8S-6', 'a hostPort', (o) => { agent(o).ports[0].hostPort = 8080; }, [`AGT-K8S-6 ${D}: ${C}.ports[0].hostPort: must not be set`]],
    ['AGT-K8S-7', 'an unconfined AppArmor profile', (o) => {
      of(o, 'Deployment').spec.template.metadata.annotations = { 'container.apparmor.security.beta.kubernetes.io/agent': 'unconfined' };
    }, [`AGT-K8S-7 ${D}: spec.template.metadata.annotations["container.apparmor.security.beta.kubernetes.io/agent"]: must be runtime/default or localhost/*, not "unconfined"`]],
    ['AGT-K8S-8', 'a custom SELinux type', (o) => { podSc(o).seLinuxOptions = { type: 'spc_t' }; },
      [`AGT-K8S-8 ${D}: ${T}.securityContext.seLinuxOptions.type: "spc_t" is not one of container_t, container_init_t, container_kvm_t`]],
    ['AGT-K8S-9', 'an unmasked /proc', (o) => { sc(o).procMount = 'Unmasked'; }, [`AGT-K8S-9 ${D}: ${C}.securityContext.procMount: must be Default, not "Unmasked"`]],
    ['AGT-K8S-10', 'seccomp Unconfined on the pod (the container inherits it)', (o) => { podSc(o).seccompProfile = { type: 'Unconfined' }; }, [
      `AGT-K8S-10 ${D}: ${T}.securityContext.seccompProfile.type: must be RuntimeDefault or Localhost, not "Unconfined"`,
      `AGT-K8S-10 ${D}: ${C}.securityContext.seccompProfile.type: must be RuntimeDefault or Localhost here or in ${T}.securityContext`,
    ]],
    ['AGT-K8S-11', 'an unsafe sysctl', (o) => { podSc(o).sysctls = [{ name: 'kernel.msgmax', value: '65536' }]; },
      [`AGT-K8S-11 ${D}: ${T}.securityContext.sysctls[0].name: "kernel.msgmax" is not a safe sysctl`]],
    ['AGT-K8S-12', 'an nfs volume', (o) => { pod(o).volumes.push({ name: 'shared', nfs: { server: 'nfs.example.com', path: '/' } }); },
      [`AGT-K8S-12 ${D}: ${T}.volumes[1].nfs: volume type nfs is not allowed`]],
    ['AGT-K8S-13', 'allowPrivilegeEscalation unset', (o) => { delete sc(o).allowPrivilegeEscalation; },
      [`AGT-K8S-13 ${D}: ${C}.securityContext.allowPrivilegeEscalation: must be false`]],
    ['AGT-K8S-14', 'runAsNonRoot false on the pod', (o) => { podSc(o).runAsNonRoot = false; }, [
      `AGT-K8S-14 ${D}: ${T}.securityContext.runAsNonRoot: must not be false`,
      `AGT-K8S-14 ${D}: ${C}.securityContext.runAsNonRoot: must be true here or in ${T}.securityContext`,
    ]],
    ['AGT-K8S-15', 'runAsUser 0', (o) => { sc(o).runAsUser = 0; }, [`AGT-K8S-15 ${D}: ${C}.securityContext.runAsUser: must not be 0`]],
    ['AGT-K8S-16', 'a writable root filesystem', (o) => { sc(o).readOnlyRootFilesystem = false; },
      [`AGT-K8S-16 ${D}: ${C}.securityContext.readOnlyRootFilesystem: must be true`]],
    ['AGT-K8S-17', 'a token mounted: set neither on the pod nor on its ServiceAccount', (o) => {
      delete pod(o).automountServiceAccountToken;
      delete of(o, 'ServiceAccount').automountServiceAccountToken;
    }, [`AGT-K8S-17 ${D}: ${T}.automountServiceAccountToken: is unset and ServiceAccount agents/support-chat does not set automountServiceAccountToken: false either: the pod mounts a Kubernetes API token`]],
    ['AGT-K8S-18', 'an image on latest', (o) => { agent(o).image = 'ghcr.io/acme/support-chat:latest'; },
      [`AGT-K8S-18 ${D}: ${C}.image: "ghcr.io/acme/support-chat:latest" uses 'latest'`]],
    ['AGT-K8S-19', 'no memory limit', (o) => { delete agent(o).resources.limits; },
      [`AGT-K8S-19 ${D}: ${C}.resources.limits.memory: is not set: the container may use all the memory of its node`]],
    ['AGT-K8S-20', 'no liveness probe', (o) => { delete agent(o).livenessProbe; }, [`AGT-K8S-20 ${D}: ${C}.livenessProbe: is not set: a hung container is never restarted`]],
    ['AGT-K8S-21', 'two replicas and no PodDisruptionBudget', (o) => { o.splice(o.indexOf(of(o, 'PodDisruptionBudget')), 1); },
      [`AGT-K8S-21 ${D}: spec.template.metadata.labels: no PodDisruptionBudget in namespace agents selects these pods, though at least 2 run (spec.replicas)`]],
    ['AGT-K8S-22', 'two replicas and no spread', (o) => { delete pod(o).topologySpreadConstraints; },
      [`AGT-K8S-22 ${D}: ${T}.topologySpreadConstraints: no topology spread constraint or podAntiAffinity selects these pods: all 2 replicas (spec.replicas) may land on one node`]],
    ['AGT-K8S-23', 'pods no NetworkPolicy selects for Ingress', (o) => { of(o, 'NetworkPolicy').spec.policyTypes = ['Egress']; },
      [`AGT-K8S-23 ${D}: spec.template.metadata.labels: no NetworkPolicy in namespace agents selects these pods for Ingress`]],
    ['AGT-K8S-24', 'agent egress to the internet that forgets to except link-local', (o) => {
      of(o, 'NetworkPolicy').spec.egress[1].to[0].ipBlock.except = NON_INTERNET_RANGES.filter((r) => r !== '169.254.0.0/16');
    }, [`AGT-K8S-24 ${NP}: spec.egress[1].to[0].ipBlock: lets the agent pods of ${D} reach 169.254.0.0/16 (the cloud metadata endpoint 169.254.169.254 included)`]],
  ];

  test('one case per rule', () => {
    expect(cases.map(([id]) => id)).toEqual(K8S_RULES.map((r) => r.id));
  });

  test.each(cases)('%s: %s', (id, _what, spoil, expected) => {
    const objects = spoiled(spoil);
    expect(found(objects)).toEqual(expected);
    const rule = K8S_RULES.find((r) => r.id === id)!;
    for (const f of checkManifests(objects)) {
      expect(f).toMatchObject({ ruleName: rule.name, level: rule.level });
      expect(f.fix).toMatch(/\.$/);
    }
  });
});

describe('findings', () => {
  test('name the object, the path, the problem and the fix, object by object in field order', () => {
    const objects = spoiled((o) => {
      agent(o).securityContext.privileged = true;
      delete pod(o).automountServiceAccountToken;
      of(o, 'ServiceAccount').automountServiceAccountToken = true;
      pod(o).hostPID = true;
    });
    const findings = checkManifests(objects);
    // A field that is not there sorts after its siblings that are (hostPID was added last).
    expect(findings.map((f) => f.path)).toEqual([`${C}.securityContext.privileged`, `${T}.hostPID`, `${T}.automountServiceAccountToken`]);
    expect(findings[0]).toEqual<K8sFinding>({
      ruleId: 'AGT-K8S-3',
      ruleName: 'Privileged Containers',
      level: RuleLevel.ERROR,
      object: D,
      objectIndex: 1,
      path: `${C}.securityContext.privileged`,
      problem: 'must not be true',
      fix: 'Remove securityContext.privileged (or set it to false).',
    });
  });

  test('an image fix names the image to pin', () => {
    const [finding] = checkManifests(spoiled((o) => { agent(o).image = 'node:20'; }));
    expect(finding).toMatchObject({ problem: `"node:20" uses the floating tag '20'`, fix: 'Pin a version tag (node:1.4.2) or a digest (node@sha256:...).' });
  });
});

describe('AGT-K8S-16 read-only root filesystem', () => {
  test('Windows pods cannot have one, and are not asked for it', () => {
    const objects = spoiled((o) => {
      pod(o).os = { name: 'windows' };
      delete agent(o).securityContext.readOnlyRootFilesystem;
      delete pod(o).securityContext.seccompProfile;
    });
    expect(found(objects)).toEqual([]);
  });
});

describe('AGT-K8S-17 ServiceAccount token', () => {
  test('false on the ServiceAccount covers a pod that leaves it unset', () => {
    expect(found(spoiled((o) => { delete pod(o).automountServiceAccountToken; }))).toEqual([]);
  });

  test('true on the pod wins over false on the ServiceAccount', () => {
    expect(found(spoiled((o) => { pod(o).automountServiceAccountToken = true; }))).toEqual([
      `AGT-K8S-17 ${D}: ${T}.automountServiceAccountToken: is true: the pod mounts a Kubernetes API token`,
    ]);
  });

  test('the default ServiceAccount, not among the objects, mounts its token', () => {
    expect(found(spoiled((o) => {
      delete pod(o).automountServiceAccountToken;
      delete pod(o).serviceAccountName;
    }))).toEqual([
      `AGT-K8S-17 ${D}: ${T}.automountServiceAccountToken: is unset and ServiceAccount default is not among the checked objects, and a ServiceAccount mounts its token by default: the pod mounts a Kubernetes API token`,
    ]);
  });
});

describe('AGT-K8S-18 pinned images, as AgentImage.fromRegistry pins them', () => {
  test.each([
    ['ghcr.io/acme/support-chat', "has no tag, so it runs whatever 'latest' is at pull time"],
    ['ghcr.io/acme/support-chat:main', "uses the floating tag 'main'"],
    ['ghcr.io/acme/support-chat@sha256:abc', 'has a malformed digest'],
  ])('%s %s', (image, problem) => {
    expect(found(spoiled((o) => { agent(o).image = image; }))).toEqual([`AGT-K8S-18 ${D}: ${C}.image: ${JSON.stringify(image)} ${problem}`]);
  });

  test.each(['ghcr.io/acme/support-chat:v2.0.0-rc.1', 'ghcr.io/acme/support-chat:sha-1a2b3c4', `ghcr.io/acme/support-chat@sha256:${'a'.repeat(64)}`])('%s is pinned', (image) => {
    expect(found(spoiled((o) => { agent(o).image = image; }))).toEqual([]);
  });

  test('init containers too', () => {
    const objects = spoiled((o) => {
      pod(o).initContainers = [{ ...hardenedContainer('init', 'busybox'), livenessProbe: undefined, readinessProbe: undefined }];
    });
    expect(found(objects)).toEqual([`AGT-K8S-18 ${D}: ${T}.initContainers[0].image: "busybox" has no tag, so it runs whatever 'latest' is at pull time`]);
  });
});

describe('AGT-K8S-19 requests and limits', () => {
  test('a request left out defaults to its limit', () => {
    expect(found(spoiled((o) => { agent(o).resources = { limits: { cpu: '1', memory: '256Mi' } }; }))).toEqual([]);
  });

  test('a container without resources misses three, init containers included', () => {
    const objects = spoiled((o) => {
      const init = hardenedContainer('init', 'busybox:1.36');
      delete init.resources;
      pod(o).initContainers = [init];
    });
    const I = `${T}.initContainers[0].resources`;
    expect(found(objects)).toEqual([
      `AGT-K8S-19 ${D}: ${I}.requests.cpu: is not set (nor a cpu limit it would default to)`,
      `AGT-K8S-19 ${D}: ${I}.requests.memory: is not set (nor a memory limit it would default to)`,
      `AGT-K8S-19 ${D}: ${I}.limits.memory: is not set: the container may use all the memory of its node`,
    ]);
  });
});

describe('AGT-K8S-20 probes', () => {
  const withoutProbes = (c: Json) => {
    delete c.livenessProbe;
    delete c.readinessProbe;
    return c;
  };

  test('init containers run to completion: no probes; a sidecar init container (restartPolicy Always) runs on: probes', () => {
    const objects = spoiled((o) => {
      pod(o).initContainers = [withoutProbes(hardenedContainer('migrate', 'busybox:1.36')), { ...withoutProbes(hardenedContainer('proxy', 'envoy:1.30.1')), restartPolicy: 'Always' }];
    });
    expect(found(objects)).toEqual([
      `AGT-K8S-20 ${D}: ${T}.initContainers[1].livenessProbe: is not set: a hung container is never restarted`,
      `AGT-K8S-20 ${D}: ${T}.initContainers[1].readinessProbe: is not set: the pod is sent traffic as soon as it starts`,
    ]);
  });

  test.each<[string, (t: Json) => Json]>([
    ['a Job', (t: Json) => ({ apiVersion: 'batch/v1', kind: 'Job', spec: { template: t } })],
    ['a CronJob', (t: Json) => ({ apiVersion: 'batch/v1', kind: 'CronJob', spec: { schedule: '0 * * * *', jobTemplate: { spec: { template: t } } } })],
    ['a KEDA ScaledJob', (t: Json) => ({ apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledJob', spec: { jobTargetRef: { template: t }, triggers: [] } })],
    ['a bare Pod that does not restart', (t: Json) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { ...t.metadata }, spec: t.spec })],
  ])('%s runs to completion: no probes', (_what, wrap) => {
    const objects = platform();
    const template = structuredClone(of(objects, 'Deployment').spec.template);
    withoutProbes(template.spec.containers[0]);
    template.spec.restartPolicy = 'Never';
    const task = wrap(template);
    objects.push({ ...task, metadata: { name: 'task', namespace: NS, ...task.metadata } });
    expect(found(objects)).toEqual([]);
    // The same containers in a Deployment are flagged.
    const service = structuredClone(template);
    delete service.spec.restartPolicy;
    objects.push({ ...of(objects, 'Deployment'), metadata: { name: 'service', namespace: NS }, spec: { ...of(objects, 'Deployment').spec, template: service } });
    expect(found(objects)).toEqual([
      `AGT-K8S-20 Deployment agents/service: ${C}.livenessProbe: is not set: a hung container is never restarted`,
      `AGT-K8S-20 Deployment agents/service: ${C}.readinessProbe: is not set: the pod is sent traffic as soon as it starts`,
    ]);
  });
});

describe('AGT-K8S-21 and AGT-K8S-22: replicated Deployments and StatefulSets', () => {
  const dropPdbAndSpread = (o: Json[]) => {
    o.splice(o.indexOf(of(o, 'PodDisruptionBudget')), 1);
    delete pod(o).topologySpreadConstraints;
  };
  const hpa = (minReplicas?: number): Json => ({
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { name: 'support-chat', namespace: NS },
    spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'support-chat' }, minReplicas, maxReplicas: 6 },
  });
  const scaledObject = (minReplicaCount?: number): Json => ({
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name: 'support-chat', namespace: NS },
    spec: { scaleTargetRef: { name: 'support-chat' }, minReplicaCount, triggers: [] },
  });
  const ids = (objects: Json[]) => checkManifests(objects).map((f) => f.ruleId);

  test('one replica needs neither', () => {
    expect(found(spoiled((o) => { dropPdbAndSpread(o); of(o, 'Deployment').spec.replicas = 1; }))).toEqual([]);
    expect(found(spoiled((o) => { dropPdbAndSpread(o); delete of(o, 'Deployment').spec.replicas; }))).toEqual([]);
  });

  test("an autoscaler's minimum counts, not spec.replicas", () => {
    const autoscaled = (extra: Json) => spoiled((o) => { dropPdbAndSpread(o); of(o, 'Deployment').spec.replicas = 5; o.push(extra); });
    expect(found(autoscaled(hpa(1)))).toEqual([]);
    expect(found(autoscaled(hpa()))).toEqual([]);
    expect(found(autoscaled(hpa(3)))).toEqual([
      `AGT-K8S-21 ${D}: spec.template.metadata.labels: no PodDisruptionBudget in namespace agents selects these pods, though at least 3 run (HorizontalPodAutoscaler agents/support-chat spec.minReplicas)`,
      `AGT-K8S-22 ${D}: ${T}.topologySpreadConstraints: no topology spread constraint or podAntiAffinity selects these pods: all 3 replicas (HorizontalPodAutoscaler agents/support-chat spec.minReplicas) may land on one node`,
    ]);
    expect(found(autoscaled(scaledObject()))).toEqual([]);
    expect(ids(autoscaled(scaledObject(2)))).toEqual(['AGT-K8S-21', 'AGT-K8S-22']);
  });

  test('a StatefulSet too; a DaemonSet never', () => {
    const kind = (k: string) => spoiled((o) => { dropPdbAndSpread(o); of(o, 'Deployment').kind = k; });
    expect(ids(kind('StatefulSet'))).toEqual(['AGT-K8S-21', 'AGT-K8S-22']);
    expect(ids(kind('DaemonSet'))).toEqual([]);
  });

  test('the PDB must select the pods, in their namespace; matchExpressions count', () => {
    const withPdb = (change: (pdb: Json) => void) => spoiled((o) => change(of(o, 'PodDisruptionBudget')));
    expect(ids(withPdb((p) => { p.metadata.namespace = 'other'; }))).toEqual(['AGT-K8S-21']);
    expect(ids(withPdb((p) => { p.spec.selector = { matchLabels: { 'app.kubernetes.io/name': 'billing' } }; }))).toEqual(['AGT-K8S-21']);
    expect(ids(withPdb((p) => { p.spec.selector = { matchExpressions: [{ key: 'app.kubernetes.io/name', operator: 'In', values: ['support-chat', 'billing'] }] }; }))).toEqual([]);
    expect(ids(withPdb((p) => { p.spec.selector = {}; }))).toEqual([]);
  });

  test('a PDB that allows no eviction at the minimum replicas blocks drains', () => {
    const budget = (spec: Json) => spoiled((o) => { of(o, 'PodDisruptionBudget').spec = { ...spec, selector: { matchLabels: SELECTOR } }; });
    expect(found(budget({ maxUnavailable: 0 }))).toEqual([
      `AGT-K8S-21 ${D}: spec.template.metadata.labels: PodDisruptionBudget agents/support-chat allows no eviction at 2 replicas (spec.replicas): node drains wait for ever`,
    ]);
    expect(ids(budget({ minAvailable: '100%' }))).toEqual(['AGT-K8S-21']);
    expect(ids(budget({ minAvailable: 2 }))).toEqual(['AGT-K8S-21']);
    expect(ids(budget({ minAvailable: '50%' }))).toEqual([]);
    expect(ids(budget({ maxUnavailable: '10%' }))).toEqual([]);
  });

  test('spread must select the pods themselves; a podAntiAffinity does too', () => {
    const withSpread = (change: (spec: Json) => void) => spoiled((o) => change(pod(o)));
    expect(ids(withSpread((s) => { s.topologySpreadConstraints[0].labelSelector = { matchLabels: { app: 'other' } }; }))).toEqual(['AGT-K8S-22']);
    expect(ids(withSpread((s) => {
      delete s.topologySpreadConstraints;
      s.affinity = { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: SELECTOR } } }] } };
    }))).toEqual([]);
    expect(ids(withSpread((s) => {
      delete s.topologySpreadConstraints;
      s.affinity = { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchExpressions: [{ key: 'app.kubernetes.io/name', operator: 'Exists' }] } }] } };
    }))).toEqual([]);
  });
});

describe('AGT-K8S-23 NetworkPolicy isolation', () => {
  const policy = (o: Json[]) => of(o, 'NetworkPolicy');

  test('a policy of another namespace, or selecting other pods, does not count', () => {
    expect(found(spoiled((o) => { policy(o).metadata.namespace = 'other'; }))).toEqual([
      `AGT-K8S-23 ${D}: spec.template.metadata.labels: no NetworkPolicy in namespace agents selects these pods for Ingress or Egress`,
      `AGT-K8S-24 ${D}: spec.template.metadata.labels: no NetworkPolicy selects these agent pods for Egress, so they reach every address, private ranges and 169.254.169.254 included`,
    ]);
    expect(found(spoiled((o) => {
      policy(o).spec.podSelector = { matchExpressions: [{ key: 'app.kubernetes.io/component', operator: 'NotIn', values: ['agent'] }] };
    }))).toHaveLength(2);
  });

  test('policyTypes default as the API server does: Egress only with egress rules', () => {
    expect(found(spoiled((o) => { delete policy(o).spec.policyTypes; }))).toEqual([]);
    const ingressOnly = spoiled((o) => {
      delete policy(o).spec.policyTypes;
      delete policy(o).spec.egress;
    });
    expect(found(ingressOnly)).toEqual([
      `AGT-K8S-23 ${D}: spec.template.metadata.labels: no NetworkPolicy in namespace agents selects these pods for Egress`,
      `AGT-K8S-24 ${D}: spec.template.metadata.labels: no NetworkPolicy selects these agent pods for Egress, so they reach every address, private ranges and 169.254.169.254 included`,
    ]);
  });

  test('two policies may each isolate one direction; an empty podSelector selects every pod', () => {
    const objects = spoiled((o) => {
      policy(o).spec.policyTypes = ['Egress'];
      o.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'default-deny-ingress', namespace: NS }, spec: { podSelector: {}, policyTypes: ['Ingress'] } });
    });
    expect(found(objects)).toEqual([]);
  });

  test('every pod template: a Job too', () => {
    const objects = spoiled((o) => {
      o.push({
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: 'report', namespace: NS },
        spec: { template: { metadata: { labels: { app: 'report' } }, spec: { ...pod(o), restartPolicy: 'Never' } } },
      });
    });
    expect(found(objects)).toEqual([`AGT-K8S-23 Job agents/report: spec.template.metadata.labels: no NetworkPolicy in namespace agents selects these pods for Ingress or Egress`]);
  });
});

describe('AGT-K8S-24 agent egress', () => {
  const egress = (o: Json[]) => of(o, 'NetworkPolicy').spec.egress;
  const AGENTS = `the agent pods of ${D}`;

  test('an address inside a private range is named with its range', () => {
    expect(found(spoiled((o) => { egress(o).push({ to: [{ ipBlock: { cidr: '10.0.12.5/32' } }], ports: [{ port: 6379 }] }); }))).toEqual([
      `AGT-K8S-24 ${NP}: spec.egress[2].to[0].ipBlock: lets ${AGENTS} reach 10.0.12.5/32 (in 10.0.0.0/8)`,
    ]);
  });

  test('an egress rule without destinations reaches everything', () => {
    expect(found(spoiled((o) => { egress(o).push({ ports: [{ port: 53, protocol: 'UDP' }] }); }))).toEqual([
      `AGT-K8S-24 ${NP}: spec.egress[2].to: is empty, so the rule lets ${AGENTS} reach every address, private ranges and 169.254.169.254 included`,
    ]);
  });

  test('any policy selecting the agent adds its egress: a namespace-wide allow-all too', () => {
    const objects = spoiled((o) => {
      o.push({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'allow-all', namespace: NS }, spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{}] } });
    });
    expect(found(objects)).toEqual([`AGT-K8S-24 NetworkPolicy agents/allow-all: spec.egress[0].to: is empty, so the rule lets ${AGENTS} reach every address, private ranges and 169.254.169.254 included`]);
  });

  test('IPv6: ::/0 reaches unique local and link-local addresses', () => {
    expect(found(spoiled((o) => { egress(o)[1].to.push({ ipBlock: { cidr: '::/0' } }); }))).toEqual([
      `AGT-K8S-24 ${NP}: spec.egress[1].to[1].ipBlock: lets ${AGENTS} reach fc00::/7, fe80::/10`,
    ]);
  });

  test('only agent pods: the same policy on pods of another component passes', () => {
    const objects = spoiled((o) => {
      egress(o).push({ to: [{ ipBlock: { cidr: '10.0.12.5/32' } }] });
      of(o, 'Deployment').spec.template.metadata.labels['app.kubernetes.io/component'] = 'agent';
      of(o, 'Deployment').spec.template.metadata.labels['app.kubernetes.io/part-of'] = 'billing';
    });
    expect(found(objects)).toEqual([]);
  });

  test('gateway and worker pods are agent pods too', () => {
    for (const component of ['llm-gateway', 'worker']) {
      const objects = spoiled((o) => {
        egress(o).push({ to: [{ ipBlock: { cidr: '192.168.1.0/24' } }] });
        for (const labels of [of(o, 'Deployment').spec.template.metadata.labels, of(o, 'NetworkPolicy').spec.podSelector.matchLabels]) {
          labels['app.kubernetes.io/component'] = component;
        }
        of(o, 'Deployment').spec.template.spec.topologySpreadConstraints[0].labelSelector = {};
        of(o, 'PodDisruptionBudget').spec.selector = {};
      });
      expect(checkManifests(objects).map((f) => `${f.ruleId} ${f.path}`)).toEqual(['AGT-K8S-24 spec.egress[2].to[0].ipBlock']);
    }
  });

  test('a block that is not a CIDR cannot be vouched for', () => {
    expect(found(spoiled((o) => { egress(o)[1].to[0].ipBlock.except.push('not-a-cidr'); }))).toEqual([
      `AGT-K8S-24 ${NP}: spec.egress[1].to[0].ipBlock: cannot be read as a CIDR with excepts, so ${AGENTS} may reach anything`,
    ]);
  });

  describe(`private destinations declared in ${PRIVATE_EGRESS_ANNOTATION}`, () => {
    const ANNOTATION = `metadata.annotations["${PRIVATE_EGRESS_ANNOTATION}"]`;
    /** The policy with egress to `cidr` on `ports` and the annotation `declaration`. */
    const declaring = (declaration: string, cidr = '10.0.0.0/16', ports: Json[] = [{ port: 6379, protocol: 'TCP' }]) =>
      spoiled((o) => {
        egress(o).push({ to: [{ ipBlock: { cidr } }], ports });
        of(o, 'NetworkPolicy').metadata.annotations = { [PRIVATE_EGRESS_ANNOTATION]: declaration };
      });

    test('the exact CIDR on a declared TCP port passes', () => {
      expect(found(declaring('10.0.0.0/16 6379 the ElastiCache Redis of the platform'))).toEqual([]);
      expect(found(declaring('10.0.0.0/16 443,6379 the ElastiCache Redis of the platform', '10.0.0.0/16', [{ port: 6379 }, { port: 443 }]))).toEqual([]);
    });

    test('several declarations, one per line', () => {
      const objects = declaring('172.20.0.0/16 5432 the billing database\n10.0.0.0/16 6379 the ElastiCache Redis of the platform');
      expect(found(objects)).toEqual([]);
    });

    const undeclared = `AGT-K8S-24 ${NP}: spec.egress[2].to[0].ipBlock: lets ${AGENTS} reach 10.0.0.0/16 (in 10.0.0.0/8)`;
    test.each<[string, string, string, Json[]]>([
      ['a port the declaration does not name', '10.0.0.0/16 6379 the ElastiCache Redis of the platform', '10.0.0.0/16', [{ port: 6379 }, { port: 22 }]],
      ['every port', '10.0.0.0/16 6379 the ElastiCache Redis of the platform', '10.0.0.0/16', []],
      ['a port range', '10.0.0.0/16 6379 the ElastiCache Redis of the platform', '10.0.0.0/16', [{ port: 6379, endPort: 6400 }]],
      ['UDP on the declared port', '10.0.0.0/16 6379 the ElastiCache Redis of the platform', '10.0.0.0/16', [{ port: 6379, protocol: 'UDP' }]],
    ])('%s is still reported', (_what, declaration, cidr, ports) => {
      expect(found(declaring(declaration, cidr, ports))).toEqual([undeclared]);
    });

    test('a wider block than the one declared is still reported', () => {
      expect(found(declaring('10.0.0.0/16 6379 the ElastiCache Redis of the platform', '10.0.0.0/8'))).toEqual([
        `AGT-K8S-24 ${NP}: spec.egress[2].to[0].ipBlock: lets ${AGENTS} reach 10.0.0.0/8`,
      ]);
    });

    test('the metadata endpoint cannot be declared: the declaration is reported and the egress too', () => {
      expect(found(declaring('169.254.0.0/16 80 instance metadata for the SDK', '169.254.0.0/16', [{ port: 80 }]))).toEqual([
        `AGT-K8S-24 ${NP}: ${ANNOTATION}: "169.254.0.0/16 80 instance metadata for the SDK" covers the cloud metadata endpoint (169.254.169.254, fd00:ec2::254), which no declaration can open: it hands out the node's credentials`,
        `AGT-K8S-24 ${NP}: spec.egress[2].to[0].ipBlock: lets ${AGENTS} reach 169.254.0.0/16 (the cloud metadata endpoint 169.254.169.254 included)`,
      ]);
      expect(found(declaring('fd00::/8 80 the IPv6 metadata for the SDK', 'fd00::/8', [{ port: 80 }]))[0]).toMatch(/covers the cloud metadata endpoint/);
    });

    test('a block wider than one private range declares nothing: 0.0.0.0/1 or 10.0.0.0/7 stay findings', () => {
      expect(found(declaring('0.0.0.0/1 6379 the ElastiCache Redis of the platform', '0.0.0.0/1'))).toEqual([
        `AGT-K8S-24 ${NP}: ${ANNOTATION}: "0.0.0.0/1 6379 the ElastiCache Redis of the platform" is not inside one private range (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), so it declares nothing: name the private block the agents must reach`,
        `AGT-K8S-24 ${NP}: spec.egress[2].to[0].ipBlock: lets ${AGENTS} reach 10.0.0.0/8, 100.64.0.0/10`,
      ]);
      expect(found(declaring('10.0.0.0/7 6379 the ElastiCache Redis of the platform', '10.0.0.0/7'))[0]).toMatch(/is not inside one private range/);
    });

    test.each([
      ['no reason', '10.0.0.0/16 6379', 'is not \'<CIDR> <TCP port>[,<port>...] <reason>\', so it declares nothing'],
      ['a short reason', '10.0.0.0/16 6379 redis', 'gives no reason of at least 10 characters: say what the agents reach there'],
      ['not a CIDR', 'ten.0.0.0/16 6379 the ElastiCache Redis', 'is not \'<CIDR> <TCP port>[,<port>...] <reason>\', so it declares nothing'],
      ['a port out of range', '10.0.0.0/16 70000 the ElastiCache Redis', 'is not \'<CIDR> <TCP port>[,<port>...] <reason>\', so it declares nothing'],
    ])('a declaration with %s declares nothing, and says so', (_what, declaration, problem) => {
      expect(found(declaring(declaration))).toEqual([`AGT-K8S-24 ${NP}: ${ANNOTATION}: ${JSON.stringify(declaration)} ${problem}`, undeclared]);
    });
  });
});

describe('nonInternetReach', () => {
  test.each<[string, string[], string[]]>([
    ['0.0.0.0/0', [...NON_INTERNET_RANGES], []],
    ['0.0.0.0/0', ['10.0.0.0/9', '10.128.0.0/9', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16'], []],
    ['0.0.0.0/0', ['10.0.0.0/8', '100.64.0.0/10', '169.254.169.254/32', '172.16.0.0/12', '192.168.0.0/16'], ['169.254.0.0/16']],
    ['169.254.169.254/32', [], ['169.254.169.254/32 (in 169.254.0.0/16; the cloud metadata endpoint)']],
    ['169.254.0.0/20', [], ['169.254.0.0/20 (in 169.254.0.0/16)']],
    ['169.254.160.0/19', [], ['169.254.160.0/19 (in 169.254.0.0/16; the cloud metadata endpoint 169.254.169.254 included)']],
    ['172.16.0.0/12', ['172.16.0.0/13'], ['172.16.0.0/12']],
    ['8.8.8.8/32', [], []],
    ['8.0.0.0/5', [], ['10.0.0.0/8']],
    ['fd00:ec2::254/128', [], ['fd00:ec2::254/128 (in fc00::/7)']],
    ['2001:db8::/32', [], []],
  ])('%s except %j reaches %j', (cidr, except, reached) => {
    expect(nonInternetReach(cidr, except)).toEqual(reached);
  });

  test.each([['10.0.0.0/33', []], ['10.0.0.0', []], ['0.0.0.0/0', ['10.0.0.0/x']]])('%s except %j is not a CIDR', (cidr, except) => {
    expect(nonInternetReach(cidr as string, except as string[])).toBeUndefined();
  });
});

test("the README's table lists every rule with its level", () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `(AGT-K8S-\d+)` \| (error|warning) \|/gm)].map((m) => `${m[1]} ${m[2]}`);
  expect(rows).toEqual(K8S_RULES.map((r) => `${r.id} ${r.level}`));
});
