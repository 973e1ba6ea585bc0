/**
 * The manifest checks in test/support/k8s-validate.ts: objects synthesized by cdk8s from the
 * Kubernetes 1.28 bindings and the generated CRD bindings pass; unknown fields, wrong types,
 * missing required fields, fields newer than 1.28, APIs not served and CRD schema violations are
 * each reported with the object and the path; every Pod Security Standards "restricted" control
 * fires on its own violation, in every kind of pod template, and a hardened pod passes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Chart, Testing, YamlOutputType } from 'cdk8s';
import {
  IntOrString,
  KubeConfigMap,
  KubeDeployment,
  KubeHorizontalPodAutoscalerV2,
  KubeNetworkPolicy,
  KubePodDisruptionBudget,
  KubeService,
  KubeServiceAccount,
  Quantity,
} from 'cdk8s-plus-28/lib/imports/k8s';
import {
  ExternalSecret,
  ExternalSecretSpecSecretStoreRefKind,
} from '../../lib/imports/external-secrets.io_externalsecrets';
import { SecretStore, SecretStoreSpecProviderAwsService } from '../../lib/imports/external-secrets.io_secretstores';
import {
  ScaledJob,
  ScaledJobSpecJobTargetRefTemplateSpecContainersResourcesLimits,
  ScaledJobSpecJobTargetRefTemplateSpecContainersResourcesRequests,
  ScaledJobSpecJobTargetRefTemplateSpecVolumesEmptyDirSizeLimit,
  ScaledJobSpecJobTargetRefTemplateSpecVolumesEphemeralVolumeClaimTemplateSpecResourcesRequests,
} from '../../lib/imports/keda.sh_scaledjobs';
import { ScaledObject } from '../../lib/imports/keda.sh_scaledobjects';
import { PrometheusRule, PrometheusRuleSpecGroupsRulesExpr } from '../../lib/imports/monitoring.coreos.com_prometheusrules';
import { ServiceMonitor } from '../../lib/imports/monitoring.coreos.com_servicemonitors';
import { checkReadOnlyRoot, checkRestricted, loadSynthesized, validateManifests } from '../support/k8s-validate';

type Json = Record<string, any>;

const LABELS = { 'app.kubernetes.io/name': 'support-chat' };

/** Container-level hardening every container of a restricted pod needs (the pod covers the rest). */
function hardenedContainer(name: string, image: string): Json {
  return {
    name,
    image,
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
  };
}

/** A pod spec meeting "restricted" with everything the profile still allows. */
function hardenedPodSpec(): Json {
  const agent = hardenedContainer('agent', 'ghcr.io/example/agent:1.0.0');
  agent.securityContext.capabilities.add = ['NET_BIND_SERVICE'];
  agent.ports = [{ containerPort: 8080, name: 'http' }];
  agent.resources = { limits: { memory: '512Mi' }, requests: { cpu: '100m', memory: '256Mi' } };
  agent.volumeMounts = [{ name: 'tmp', mountPath: '/tmp' }];
  return {
    automountServiceAccountToken: false,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
      seLinuxOptions: { type: 'container_t' },
      sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
    },
    initContainers: [hardenedContainer('init', 'busybox:1.36')],
    containers: [agent],
    volumes: [
      { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
      { name: 'config', configMap: { name: 'support-chat-sidecar' } },
      { name: 'keys', secret: { secretName: 'llm-keys' } },
      { name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3600 } }] } },
      { name: 'info', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } },
      { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
      { name: 'csi', csi: { driver: 'secrets-store.csi.k8s.io', readOnly: true } },
      { name: 'scratch', ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } } },
    ],
  };
}

function hardenedTemplate(): Json {
  return {
    metadata: { labels: LABELS, annotations: { 'container.apparmor.security.beta.kubernetes.io/agent': 'runtime/default' } },
    spec: hardenedPodSpec(),
  };
}

/** A bare Pod (the only place ephemeral containers appear) in agents/bad. */
function hardenedPod(): Json {
  const { metadata, spec } = hardenedTemplate();
  spec.ephemeralContainers = [hardenedContainer('debug', 'busybox:1.36')];
  return { apiVersion: 'v1', kind: 'Pod', metadata: { ...metadata, name: 'bad', namespace: 'agents' }, spec };
}

type Quantities = Record<'limits' | 'requests' | 'sizeLimit' | 'storage', (value: string) => unknown>;

/**
 * The hardened template for a binding: cdk8s bindings take quantities as classes
 * (`Quantity.fromString('1Gi')`) and drop plain strings when they render.
 */
function templateFor(q: Quantities): Json {
  const t = hardenedTemplate();
  const [agent] = t.spec.containers;
  agent.resources = {
    limits: { memory: q.limits('512Mi') },
    requests: { cpu: q.requests('100m'), memory: q.requests('256Mi') },
  };
  t.spec.volumes[0].emptyDir.sizeLimit = q.sizeLimit('64Mi');
  t.spec.volumes[7].ephemeral.volumeClaimTemplate.spec.resources.requests.storage = q.storage('1Gi');
  return t;
}

const k8sQuantity = (value: string) => Quantity.fromString(value);

/** The example platform's kinds, built with the 1.28 bindings and the generated CRD bindings. */
function platform(app: App): Chart {
  const chart = new Chart(app, 'platform', { namespace: 'agents', disableResourceNameHashes: true });
  const meta = { name: 'support-chat', labels: LABELS };
  new KubeServiceAccount(chart, 'sa', { metadata: meta, automountServiceAccountToken: false });
  new KubeConfigMap(chart, 'config', { metadata: { name: 'support-chat-sidecar' }, data: { 'sidecar.json': '{}' } });
  new KubeDeployment(chart, 'deployment', {
    metadata: meta,
    spec: {
      replicas: 2,
      selector: { matchLabels: LABELS },
      template: templateFor({ limits: k8sQuantity, requests: k8sQuantity, sizeLimit: k8sQuantity, storage: k8sQuantity }),
    },
  });
  new KubeService(chart, 'service', {
    metadata: meta,
    spec: { selector: LABELS, ports: [{ name: 'http', port: 80, targetPort: IntOrString.fromString('http') }] },
  });
  new KubeNetworkPolicy(chart, 'netpol', {
    metadata: meta,
    spec: {
      podSelector: { matchLabels: LABELS },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } }], ports: [{ port: IntOrString.fromNumber(8080), protocol: 'TCP' }] }],
      egress: [{ ports: [{ port: IntOrString.fromNumber(443) }] }],
    },
  });
  new KubeHorizontalPodAutoscalerV2(chart, 'hpa', {
    metadata: meta,
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'support-chat' },
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }],
    },
  });
  new KubePodDisruptionBudget(chart, 'pdb', { metadata: meta, spec: { minAvailable: IntOrString.fromNumber(1), selector: { matchLabels: LABELS } } });
  new ScaledObject(chart, 'scaledobject', {
    metadata: { name: 'support-chat-queue' },
    spec: {
      scaleTargetRef: { name: 'support-chat' },
      minReplicaCount: 1,
      maxReplicaCount: 10,
      triggers: [{ type: 'prometheus', metadata: { serverAddress: 'http://prometheus:9090', query: 'sum(llm_requests_in_flight)', threshold: '20' } }],
    },
  });
  new ScaledJob(chart, 'scaledjob', {
    metadata: { name: 'batch-agent' },
    spec: {
      jobTargetRef: {
        backoffLimit: 2,
        template: templateFor({
          limits: (v) => ScaledJobSpecJobTargetRefTemplateSpecContainersResourcesLimits.fromString(v),
          requests: (v) => ScaledJobSpecJobTargetRefTemplateSpecContainersResourcesRequests.fromString(v),
          sizeLimit: (v) => ScaledJobSpecJobTargetRefTemplateSpecVolumesEmptyDirSizeLimit.fromString(v),
          storage: (v) => ScaledJobSpecJobTargetRefTemplateSpecVolumesEphemeralVolumeClaimTemplateSpecResourcesRequests.fromString(v),
        }),
      },
      triggers: [{ type: 'prometheus', metadata: { serverAddress: 'http://prometheus:9090', query: 'sum(tasks_pending)', threshold: '1' } }],
    },
  });
  new ServiceMonitor(chart, 'servicemonitor', {
    metadata: meta,
    spec: { selector: { matchLabels: LABELS }, endpoints: [{ port: 'http', path: '/metrics', interval: '30s' }] },
  });
  new PrometheusRule(chart, 'rules', {
    metadata: meta,
    spec: {
      groups: [{
        name: 'llm-cost',
        rules: [{ alert: 'LlmSpendHigh', expr: PrometheusRuleSpecGroupsRulesExpr.fromString('sum(rate(llm_cost_usd_total[1h])) * 24 > 50'), for: '15m', labels: { severity: 'warning' } }],
      }],
    },
  });
  new SecretStore(chart, 'secretstore', {
    metadata: { name: 'aws' },
    spec: { provider: { aws: { service: SecretStoreSpecProviderAwsService.SECRETS_MANAGER, region: 'eu-west-1' } } },
  });
  new ExternalSecret(chart, 'externalsecret', {
    metadata: { name: 'llm-keys' },
    spec: {
      refreshInterval: '1h',
      secretStoreRef: { kind: ExternalSecretSpecSecretStoreRefKind.SECRET_STORE, name: 'aws' },
      target: { name: 'llm-keys' },
      data: [{ secretKey: 'openai', remoteRef: { key: 'prod/llm/openai' } }],
    },
  });
  return chart;
}

function synthPlatform(): Json[] {
  return Testing.synth(platform(Testing.app()));
}

function deployment(): Json {
  return synthPlatform().find((o) => o.kind === 'Deployment')!;
}

describe('validateManifests accepts', () => {
  test('the built-in kinds and custom resources synthesized by cdk8s', () => {
    const objects = synthPlatform();
    expect(objects.map((o) => `${o.apiVersion} ${o.kind}`).sort()).toEqual([
      'apps/v1 Deployment',
      'autoscaling/v2 HorizontalPodAutoscaler',
      'external-secrets.io/v1 ExternalSecret',
      'external-secrets.io/v1 SecretStore',
      'keda.sh/v1alpha1 ScaledJob',
      'keda.sh/v1alpha1 ScaledObject',
      'monitoring.coreos.com/v1 PrometheusRule',
      'monitoring.coreos.com/v1 ServiceMonitor',
      'networking.k8s.io/v1 NetworkPolicy',
      'policy/v1 PodDisruptionBudget',
      'v1 ConfigMap',
      'v1 Service',
      'v1 ServiceAccount',
    ]);
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('the same objects read back from a synth output dir by loadSynthesized', () => {
    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-validate-'));
    try {
      const app = new App({ outdir, yamlOutputType: YamlOutputType.FOLDER_PER_CHART_FILE_PER_RESOURCE });
      platform(app);
      app.synth();
      const byName = (a: Json, b: Json) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`);
      const loaded = loadSynthesized(outdir) as Json[];
      expect(fs.readdirSync(path.join(outdir, 'platform')).length).toBe(13);
      expect([...loaded].sort(byName)).toEqual(synthPlatform().sort(byName));
      expect(validateManifests(loaded)).toEqual([]);
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });

  test('quantities may be numbers or strings in any unit the API server accepts', () => {
    const d = deployment();
    d.spec.template.spec.containers[0].resources = {
      limits: { cpu: 0.5, memory: '1Gi', 'ephemeral-storage': '2G' },
      requests: { cpu: '250m', memory: 1e9, 'ephemeral-storage': '1.5e3' },
    };
    expect(validateManifests([d])).toEqual([]);
  });
});

describe('validateManifests catches', () => {
  const D = 'Deployment agents/support-chat';
  const C = 'spec.template.spec.containers';

  test('an unknown field, by its path', () => {
    const d = deployment();
    d.spec.template.spec.containers.push({ name: 'sidecar', image: 'x', securityContext: { runAsNonroot: true } });
    expect(validateManifests([d])).toEqual([`${D}: ${C}[1].securityContext.runAsNonroot: unknown field`]);
  });

  test('an unknown field in metadata, labels with dots quoted', () => {
    const d = deployment();
    d.metadata.label = { a: 'b' };
    d.metadata.labels['app.kubernetes.io/part-of'] = 3;
    expect(validateManifests([d])).toEqual([
      `${D}: metadata.label: unknown field`,
      `${D}: metadata.labels["app.kubernetes.io/part-of"]: must be string, not integer`,
    ]);
  });

  test('wrong types: a string for an integer, a fraction for an integer, an object for a list', () => {
    const d = deployment();
    d.spec.replicas = '2';
    d.spec.template.spec.containers[0].ports[0].containerPort = 8080.5;
    d.spec.template.spec.containers[0].args = { verbose: true };
    expect(validateManifests([d])).toEqual([
      `${D}: spec.replicas: must be integer, not string`,
      `${D}: ${C}[0].args: must be array, not object`,
      `${D}: ${C}[0].ports[0].containerPort: must be integer, not number`,
    ]);
  });

  test('a malformed quantity and an int-or-string of the wrong type', () => {
    const d = deployment();
    d.spec.template.spec.containers[0].resources.limits.memory = '512MB';
    d.spec.strategy = { rollingUpdate: { maxSurge: true } };
    expect(validateManifests([d])).toEqual([
      `${D}: spec.strategy.rollingUpdate.maxSurge: must be string or integer, not boolean`,
      `${D}: ${C}[0].resources.limits.memory: "512MB" is not a quantity (like 512Mi, 2, 0.5, 100m)`,
    ]);
  });

  test('a missing required field: containers[].name, spec.selector', () => {
    const d = deployment();
    delete d.spec.template.spec.containers[0].name;
    delete d.spec.selector;
    expect(validateManifests([d])).toEqual([
      `${D}: spec.selector: required field missing`,
      `${D}: ${C}[0].name: required field missing`,
    ]);
  });

  test('a top-level object without a name', () => {
    const d = deployment();
    delete d.metadata.name;
    expect(validateManifests([d])).toEqual(['Deployment agents/<unnamed>: metadata.name: required field missing']);
  });

  test('fields newer than Kubernetes 1.28: lifecycle sleep (1.29), appArmorProfile (1.30)', () => {
    const d = deployment();
    d.spec.template.spec.containers[0].lifecycle = { preStop: { sleep: { seconds: 5 } } };
    d.spec.template.spec.securityContext.appArmorProfile = { type: 'RuntimeDefault' };
    expect(validateManifests([d])).toEqual([
      `${D}: ${C}[0].lifecycle.preStop.sleep: unknown field`,
      `${D}: spec.template.spec.securityContext.appArmorProfile: unknown field`,
    ]);
  });

  test('APIs not served by Kubernetes 1.28, and unknown kinds', () => {
    expect(validateManifests([
      { apiVersion: 'policy/v1beta1', kind: 'PodDisruptionBudget', metadata: { name: 'pdb', namespace: 'agents' }, spec: {} },
      { apiVersion: 'autoscaling/v2beta2', kind: 'HorizontalPodAutoscaler', metadata: { name: 'hpa', namespace: 'agents' }, spec: {} },
      { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } },
      { kind: 'ConfigMap', metadata: { name: 'no-api-version' } },
    ])).toEqual([
      'PodDisruptionBudget agents/pdb: policy/v1beta1 does not serve PodDisruptionBudget in Kubernetes 1.28 (served: policy/v1)',
      'HorizontalPodAutoscaler agents/hpa: autoscaling/v2beta2 does not serve HorizontalPodAutoscaler in Kubernetes 1.28 (served: autoscaling/v1, autoscaling/v2)',
      'Widget w: unknown apiVersion/kind example.com/v1 Widget (neither Kubernetes 1.28 nor a vendored CRD)',
      'ConfigMap no-api-version: not a Kubernetes object (apiVersion and kind must be strings)',
    ]);
  });

  test('an external-secrets v1beta1 object: the CRD no longer serves it', () => {
    const es = synthPlatform().find((o) => o.kind === 'ExternalSecret')!;
    es.apiVersion = 'external-secrets.io/v1beta1';
    expect(validateManifests([es])).toEqual([
      'ExternalSecret agents/llm-keys: external-secrets.io/v1beta1 is not served by the CRD in external-secrets.io_externalsecrets.yaml (served: external-secrets.io/v1)',
    ]);
  });

  test('custom resources violating their CRD schema: type, enum, pattern, unknown field, required field', () => {
    const objects = synthPlatform();
    const get = (kind: string) => objects.find((o) => o.kind === kind)!;
    get('ScaledObject').spec.minReplicaCount = 'one';
    get('ExternalSecret').spec.secretStoreRef.kind = 'SecretStor';
    get('ServiceMonitor').spec.endpoints[0].interval = '30 s';
    get('ServiceMonitor').spec.endpoints[0].targetport = 8080;
    delete get('PrometheusRule').spec.groups[0].rules[0].expr;
    get('SecretStore').metadata.labelz = {};
    expect(validateManifests([get('ScaledObject'), get('ExternalSecret'), get('ServiceMonitor'), get('PrometheusRule'), get('SecretStore')])).toEqual([
      'ScaledObject agents/support-chat-queue: spec.minReplicaCount: must be integer, not string',
      'ExternalSecret agents/llm-keys: spec.secretStoreRef.kind: must be one of "SecretStore", "ClusterSecretStore", not "SecretStor"',
      expect.stringMatching(/^ServiceMonitor agents\/support-chat: spec\.endpoints\[0\]\.interval: must match pattern .* \(got "30 s"\)$/),
      'ServiceMonitor agents/support-chat: spec.endpoints[0].targetport: unknown field',
      'PrometheusRule agents/support-chat: spec.groups[0].rules[0].expr: required field missing',
      'SecretStore agents/aws: metadata.labelz: unknown field',
    ]);
  });

  test('duplicate keys in a CRD list-map (x-kubernetes-list-type: map)', () => {
    const rule = synthPlatform().find((o) => o.kind === 'PrometheusRule')!;
    rule.spec.groups.push({ ...rule.spec.groups[0] });
    expect(validateManifests([rule])).toEqual(['PrometheusRule agents/support-chat: spec.groups: duplicate entry ["llm-cost"]']);
  });

  test("a ScaledJob's jobTargetRef is also checked as a 1.28 JobSpec, which KEDA's newer CRD does not catch", () => {
    const job = synthPlatform().find((o) => o.kind === 'ScaledJob')!;
    job.spec.jobTargetRef.template.spec.containers[0].lifecycle = { preStop: { sleep: { seconds: 5 } } };
    expect(validateManifests([job])).toEqual([
      'ScaledJob agents/batch-agent: spec.jobTargetRef.template.spec.containers[0].lifecycle.preStop.sleep: unknown field (as a Kubernetes 1.28 JobSpec)',
    ]);
  });
});

describe('checkRestricted', () => {
  const P = 'Pod agents/bad';
  const cases: [string, (pod: Json) => void, string[]][] = [
    ['hostNetwork', (p) => { p.spec.hostNetwork = true; }, [`${P}: spec.hostNetwork: must not be true (Host Namespaces)`]],
    ['hostPID', (p) => { p.spec.hostPID = true; }, [`${P}: spec.hostPID: must not be true (Host Namespaces)`]],
    ['hostIPC', (p) => { p.spec.hostIPC = true; }, [`${P}: spec.hostIPC: must not be true (Host Namespaces)`]],
    ['a privileged container', (p) => { p.spec.containers[0].securityContext.privileged = true; },
      [`${P}: spec.containers[0].securityContext.privileged: must not be true (Privileged Containers)`]],
    ['an added capability other than NET_BIND_SERVICE', (p) => { p.spec.containers[0].securityContext.capabilities.add.push('SYS_ADMIN'); },
      [`${P}: spec.containers[0].securityContext.capabilities.add[1]: "SYS_ADMIN" is not allowed (only NET_BIND_SERVICE) (Capabilities)`]],
    ['capabilities not dropping ALL (init container)', (p) => { p.spec.initContainers[0].securityContext.capabilities.drop = ['NET_RAW']; },
      [`${P}: spec.initContainers[0].securityContext.capabilities.drop: must include ALL (Capabilities)`]],
    ['a hostPath volume', (p) => { p.spec.volumes.push({ name: 'host', hostPath: { path: '/var/run' } }); },
      [`${P}: spec.volumes[8].hostPath: hostPath volumes are not allowed (HostPath Volumes)`]],
    ['a volume type outside the allowed list', (p) => { p.spec.volumes.push({ name: 'nfs', nfs: { server: 'nfs', path: '/' } }); },
      [`${P}: spec.volumes[8].nfs: volume type nfs is not allowed (Volume Types)`]],
    ['a hostPort', (p) => { p.spec.containers[0].ports[0].hostPort = 8080; },
      [`${P}: spec.containers[0].ports[0].hostPort: must not be set (Host Ports)`]],
    ['runAsNonRoot false in a container although the pod says true', (p) => { p.spec.containers[0].securityContext.runAsNonRoot = false; },
      [`${P}: spec.containers[0].securityContext.runAsNonRoot: must not be false (Running as Non-root)`]],
    ['runAsNonRoot neither on the pod nor on the containers', (p) => { delete p.spec.securityContext.runAsNonRoot; },
      ['initContainers', 'containers', 'ephemeralContainers'].map((list) =>
        `${P}: spec.${list}[0].securityContext.runAsNonRoot: must be true here or in spec.securityContext (Running as Non-root)`)],
    ['runAsUser 0 on the pod', (p) => { p.spec.securityContext.runAsUser = 0; },
      [`${P}: spec.securityContext.runAsUser: must not be 0 (Running as Non-root user)`]],
    ['runAsUser 0 on an ephemeral container', (p) => { p.spec.ephemeralContainers[0].securityContext.runAsUser = 0; },
      [`${P}: spec.ephemeralContainers[0].securityContext.runAsUser: must not be 0 (Running as Non-root user)`]],
    ['seccomp Unconfined on a container', (p) => { p.spec.containers[0].securityContext.seccompProfile = { type: 'Unconfined' }; },
      [`${P}: spec.containers[0].securityContext.seccompProfile.type: must be RuntimeDefault or Localhost, not "Unconfined" (Seccomp)`]],
    ['no seccomp profile anywhere', (p) => { delete p.spec.securityContext.seccompProfile; },
      ['initContainers', 'containers', 'ephemeralContainers'].map((list) =>
        `${P}: spec.${list}[0].securityContext.seccompProfile.type: must be RuntimeDefault or Localhost here or in spec.securityContext (Seccomp)`)],
    ['allowPrivilegeEscalation true (ephemeral container)', (p) => { p.spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation = true; },
      [`${P}: spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation: must be false (Privilege Escalation)`]],
    ['allowPrivilegeEscalation unset (init container)', (p) => { delete p.spec.initContainers[0].securityContext.allowPrivilegeEscalation; },
      [`${P}: spec.initContainers[0].securityContext.allowPrivilegeEscalation: must be false (Privilege Escalation)`]],
    ['an unsafe sysctl', (p) => { p.spec.securityContext.sysctls.push({ name: 'kernel.msgmax', value: '65536' }); },
      [`${P}: spec.securityContext.sysctls[1].name: "kernel.msgmax" is not a safe sysctl (Sysctls)`]],
    ['procMount Unmasked', (p) => { p.spec.containers[0].securityContext.procMount = 'Unmasked'; },
      [`${P}: spec.containers[0].securityContext.procMount: must be Default, not "Unmasked" (/proc Mount Type)`]],
    ['a custom SELinux type on the pod', (p) => { p.spec.securityContext.seLinuxOptions.type = 'spc_t'; },
      [`${P}: spec.securityContext.seLinuxOptions.type: "spc_t" is not one of container_t, container_init_t, container_kvm_t (SELinux)`]],
    ['an SELinux user on a container', (p) => { p.spec.containers[0].securityContext.seLinuxOptions = { user: 'system_u' }; },
      [`${P}: spec.containers[0].securityContext.seLinuxOptions.user: must not be set (SELinux)`]],
    ['an unconfined AppArmor annotation', (p) => { p.metadata.annotations['container.apparmor.security.beta.kubernetes.io/agent'] = 'unconfined'; },
      [`${P}: metadata.annotations["container.apparmor.security.beta.kubernetes.io/agent"]: must be runtime/default or localhost/*, not "unconfined" (AppArmor)`]],
    ['a Windows HostProcess container', (p) => { p.spec.containers[0].securityContext.windowsOptions = { hostProcess: true }; },
      [`${P}: spec.containers[0].securityContext.windowsOptions.hostProcess: must not be true (HostProcess)`]],
  ];

  test('a hardened pod passes every check, the schema included', () => {
    const pod = hardenedPod();
    expect(checkRestricted([pod])).toEqual([]);
    expect(checkReadOnlyRoot([pod])).toEqual([]);
    expect(validateManifests([pod])).toEqual([]);
  });

  test('localhost AppArmor and Localhost seccomp profiles are allowed, set per container', () => {
    const pod = hardenedPod();
    pod.metadata.annotations['container.apparmor.security.beta.kubernetes.io/agent'] = 'localhost/agent-profile';
    delete pod.spec.securityContext.runAsNonRoot;
    delete pod.spec.securityContext.seccompProfile;
    for (const c of [...pod.spec.initContainers, ...pod.spec.containers, ...pod.spec.ephemeralContainers]) {
      c.securityContext.runAsNonRoot = true;
      c.securityContext.seccompProfile = { type: 'Localhost', localhostProfile: 'profiles/agent.json' };
    }
    expect(checkRestricted([pod])).toEqual([]);
  });

  test.each(cases)('catches %s', (_name, spoil, expected) => {
    const pod = hardenedPod();
    spoil(pod);
    expect(checkRestricted([pod])).toEqual(expected);
  });

  test('Windows pods are exempt from the Linux-only controls, not from the others', () => {
    const pod = hardenedPod();
    pod.spec.os = { name: 'windows' };
    delete pod.spec.securityContext.seccompProfile;
    delete pod.spec.securityContext.seLinuxOptions;
    for (const c of pod.spec.containers) delete c.securityContext.allowPrivilegeEscalation;
    pod.spec.initContainers[0].securityContext.capabilities = {};
    expect(checkRestricted([pod])).toEqual([]);
    pod.spec.hostNetwork = true;
    expect(checkRestricted([pod])).toEqual([`${P}: spec.hostNetwork: must not be true (Host Namespaces)`]);
  });

  const workloads: [string, string, (template: Json) => Json, string][] = [
    ['apps/v1', 'Deployment', (t) => ({ selector: { matchLabels: LABELS }, template: t }), 'spec.template'],
    ['apps/v1', 'StatefulSet', (t) => ({ selector: { matchLabels: LABELS }, serviceName: 'w', template: t }), 'spec.template'],
    ['apps/v1', 'DaemonSet', (t) => ({ selector: { matchLabels: LABELS }, template: t }), 'spec.template'],
    ['apps/v1', 'ReplicaSet', (t) => ({ selector: { matchLabels: LABELS }, template: t }), 'spec.template'],
    ['batch/v1', 'Job', (t) => ({ template: { ...t, spec: { ...t.spec, restartPolicy: 'Never' } } }), 'spec.template'],
    ['batch/v1', 'CronJob', (t) => ({ schedule: '*/5 * * * *', jobTemplate: { spec: { template: { ...t, spec: { ...t.spec, restartPolicy: 'Never' } } } } }),
      'spec.jobTemplate.spec.template'],
    ['keda.sh/v1alpha1', 'ScaledJob', (t) => ({ jobTargetRef: { template: t }, triggers: [{ type: 'cron', metadata: { timezone: 'UTC', start: '0 * * * *', end: '5 * * * *', desiredReplicas: '1' } }] }),
      'spec.jobTargetRef.template'],
  ];

  test.each(workloads)('finds the pod template of %s %s', (apiVersion, kind, spec, at) => {
    const object = (template: Json) => ({ apiVersion, kind, metadata: { name: 'w', namespace: 'agents' }, spec: spec(template) });
    const good = object(hardenedTemplate());
    expect(validateManifests([good])).toEqual([]);
    expect(checkRestricted([good])).toEqual([]);

    const bad = hardenedTemplate();
    bad.spec.containers[0].securityContext.privileged = true;
    bad.spec.initContainers[0].securityContext.readOnlyRootFilesystem = false;
    bad.metadata.annotations['container.apparmor.security.beta.kubernetes.io/agent'] = 'unconfined';
    expect(checkRestricted([object(bad)])).toEqual([
      `${kind} agents/w: ${at}.metadata.annotations["container.apparmor.security.beta.kubernetes.io/agent"]: must be runtime/default or localhost/*, not "unconfined" (AppArmor)`,
      `${kind} agents/w: ${at}.spec.containers[0].securityContext.privileged: must not be true (Privileged Containers)`,
    ]);
    expect(checkReadOnlyRoot([object(bad)])).toEqual([
      `${kind} agents/w: ${at}.spec.initContainers[0].securityContext.readOnlyRootFilesystem: must be true (Read-only root filesystem)`,
    ]);
  });

  test('ignores objects without pod templates', () => {
    const objects = synthPlatform().filter((o) => !['Deployment', 'ScaledJob'].includes(o.kind));
    objects.push({ apiVersion: 'example.com/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { template: { spec: { hostNetwork: true } } } });
    expect(checkRestricted(objects)).toEqual([]);
  });
});

describe('checkReadOnlyRoot', () => {
  test('reports every container without a read-only root filesystem, ephemeral ones included', () => {
    const pod = hardenedPod();
    delete pod.spec.containers[0].securityContext.readOnlyRootFilesystem;
    pod.spec.ephemeralContainers[0].securityContext.readOnlyRootFilesystem = false;
    expect(checkReadOnlyRoot([pod])).toEqual([
      'Pod agents/bad: spec.containers[0].securityContext.readOnlyRootFilesystem: must be true (Read-only root filesystem)',
      'Pod agents/bad: spec.ephemeralContainers[0].securityContext.readOnlyRootFilesystem: must be true (Read-only root filesystem)',
    ]);
    // A separate rule: PSS restricted does not require it.
    expect(checkRestricted([pod])).toEqual([]);
  });
});
