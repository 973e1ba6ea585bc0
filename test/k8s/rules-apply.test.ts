/**
 * The rule pack on cdk8s apps: K8sRules.applyTo fails synth on errors with every finding listed
 * and passes warnings on; suppressions need a reason, cover the objects under a construct (or
 * named ones), never reach the manifests and must name a rule of the pack. AgentService and
 * LlmGateway pass the pack as they are, and the pack finds a real gap (Redis by address) in one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ApiObject, type App, Chart, Testing } from 'cdk8s';
import { KubeDeployment, KubeNetworkPolicy } from 'cdk8s-plus-28/lib/imports/k8s';
import {
  BudgetStore,
  checkManifests,
  K8S_RULES,
  K8sRules,
  LlmGateway,
  LlmProvider,
  RuleLevel,
  SecretKey,
  type K8sFinding,
} from '../../lib';
import { agent, synth, type Json } from './helpers';

const NS = 'agents';

/** A Deployment as a third-party chart might ship it: one replica, root, no probes, latest. */
function vendorDeployment(scope: Chart, id: string, name = id): KubeDeployment {
  const labels = { app: name };
  return new KubeDeployment(scope, id, {
    metadata: { name },
    spec: {
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name, image: `vendor/${name}:latest` }] } },
    },
  });
}

function ids(findings: K8sFinding[]): string[] {
  return [...new Set(findings.map((f) => f.ruleId))];
}

function appWithChart(): { app: App; chart: Chart } {
  const app = Testing.app();
  return { app, chart: new Chart(app, 'platform', { namespace: NS, disableResourceNameHashes: true }) };
}

describe('our constructs pass the pack', () => {
  test('an agent with a port, connected to a gateway: no finding, warnings included', () => {
    const { app, chart } = appWithChart();
    const gateway = new LlmGateway(chart, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
    agent(chart, 'SupportChat', { providers: undefined, gateway, port: 8080, healthPath: '/healthz' });
    expect(K8sRules.check(app)).toEqual([]);
  });

  test('an agent without a port has no probes on its container: two warnings, synth passes', () => {
    const { app, chart } = appWithChart();
    agent(chart, 'SupportChat');
    const warnings: K8sFinding[] = [];
    K8sRules.applyTo(app, { onWarning: (f) => warnings.push(f) });
    app.synth();
    expect(warnings.map((f) => `${f.ruleId} ${f.object}: ${f.path}`)).toEqual([
      'AGT-K8S-20 Deployment agents/support-chat: spec.template.spec.containers[1].livenessProbe',
      'AGT-K8S-20 Deployment agents/support-chat: spec.template.spec.containers[1].readinessProbe',
    ]);
    expect(warnings.every((f) => f.level === RuleLevel.WARNING)).toBe(true);
  });

  test('Redis without a peer opens its port to every address: an error, until suppressed with its reason', () => {
    const { app, chart } = appWithChart();
    const a = agent(chart, 'SupportChat', {
      port: 8080,
      store: BudgetStore.redis({ url: 'redis://master.agents.cache.amazonaws.com:6379', passwordSecret: SecretKey.fromSecret('redis', 'password') }),
    });
    expect(K8sRules.check(app).map((f) => `${f.ruleId} ${f.object}: ${f.path}: ${f.problem}`)).toEqual([
      'AGT-K8S-24 NetworkPolicy agents/support-chat: spec.egress[2].to[0].ipBlock: lets the agent pods of Deployment agents/support-chat reach ' +
        '10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16 (the cloud metadata endpoint 169.254.169.254 included), 172.16.0.0/12, 192.168.0.0/16',
    ]);
    K8sRules.suppress(a, 'AGT-K8S-24', 'Redis is ElastiCache at a VPC address; its port 6379 is all the rule opens.');
    expect(K8sRules.check(app)).toEqual([]);
  });
});

describe('K8sRules.applyTo', () => {
  test('fails synth on errors, every finding listed with its rule, object, path and fix', () => {
    const { app, chart } = appWithChart();
    vendorDeployment(chart, 'cache');
    K8sRules.applyTo(app, { onWarning: () => undefined });
    let message = '';
    try {
      app.synth();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^Validation failed with the following errors:/);
    for (const line of [
      '[AGT-K8S-13 Privilege Escalation] Deployment agents/cache: spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: must be false. Fix: Set securityContext.allowPrivilegeEscalation: false in every container.',
      `[AGT-K8S-18 Pinned images] Deployment agents/cache: spec.template.spec.containers[0].image: "vendor/cache:latest" uses 'latest'. Fix: Pin a version tag (vendor/cache:1.4.2) or a digest (vendor/cache@sha256:...).`,
      '[AGT-K8S-23 NetworkPolicy isolation] Deployment agents/cache: spec.template.metadata.labels: no NetworkPolicy in namespace agents selects these pods for Ingress or Egress.',
    ]) {
      expect(message).toContain(line);
    }
    const listed = message.split('\n').filter((l) => /\[AGT-K8S-\d+ /.test(l));
    const expected = K8sRules.check(app).filter((f) => f.level === RuleLevel.ERROR);
    expect(listed).toHaveLength(expected.length);
    expect(message).toContain(`${expected.length} finding(s) of the cdk-agents rule pack: fix each, or if a rule does not apply, K8sRules.suppress(construct, ruleId, reason).`);
    expect(fs.existsSync(path.join(app.outdir, 'platform.k8s.yaml'))).toBe(false);
  });

  test('checks every chart of the app together: a NetworkPolicy in one chart covers pods of another', () => {
    const { app, chart } = appWithChart();
    vendorDeployment(chart, 'cache');
    const policies = new Chart(app, 'policies', { namespace: NS });
    new KubeNetworkPolicy(policies, 'deny', { metadata: { name: 'default-deny' }, spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] } });
    expect(ids(K8sRules.check(app))).not.toContain('AGT-K8S-23');
    expect(ids(K8sRules.check(chart))).toContain('AGT-K8S-23');
  });

  test('warnings reach onWarning once however often the app validates; failOnWarnings fails synth on them', () => {
    const { app, chart } = appWithChart();
    agent(chart, 'SupportChat');
    const warnings: string[] = [];
    K8sRules.applyTo(app, { onWarning: (f) => warnings.push(f.ruleId) });
    Testing.synth(chart);
    app.synth();
    expect(warnings).toEqual(['AGT-K8S-20', 'AGT-K8S-20']);

    const strict = appWithChart();
    agent(strict.chart, 'SupportChat');
    K8sRules.applyTo(strict.app, { failOnWarnings: true });
    expect(() => strict.app.synth()).toThrow(/\[AGT-K8S-20 Liveness and readiness probes\] Deployment agents\/support-chat: spec\.template\.spec\.containers\[1\]\.livenessProbe/);
  });

  test('warnings are printed to stderr by default', () => {
    const { app, chart } = appWithChart();
    agent(chart, 'SupportChat');
    K8sRules.applyTo(app);
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      app.synth();
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
        expect.stringMatching(/^warning: \[AGT-K8S-20 Liveness and readiness probes\] Deployment agents\/support-chat: spec\.template\.spec\.containers\[1\]\.livenessProbe: is not set/),
        expect.stringMatching(/^warning: \[AGT-K8S-20 .*readinessProbe: is not set/),
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  test('an object that cannot render fails synth with its own construct message, not the pack', () => {
    const { app, chart } = appWithChart();
    agent(chart, 'SupportChat', { providers: undefined });
    K8sRules.applyTo(app);
    expect(() => app.synth()).toThrow(/no way to reach an LLM/);
  });

  test('is applied once per scope', () => {
    const { app } = appWithChart();
    K8sRules.applyTo(app);
    expect(() => K8sRules.applyTo(app)).toThrow("K8sRules.applyTo: the rule pack is already applied to '<app>'.");
  });

  test('runs the rules given', () => {
    const { app, chart } = appWithChart();
    vendorDeployment(chart, 'cache');
    const pinned = K8S_RULES.find((r) => r.id === 'AGT-K8S-18')!;
    expect(ids(K8sRules.check(app))).toEqual(expect.arrayContaining(['AGT-K8S-13', 'AGT-K8S-18', 'AGT-K8S-23']));
    expect(ids(K8sRules.check(app, { rules: [pinned] }))).toEqual(['AGT-K8S-18']);
  });
});

describe('suppressions', () => {
  test('cover every object under the construct, and only those', () => {
    const { app, chart } = appWithChart();
    const cache = vendorDeployment(chart, 'cache');
    vendorDeployment(chart, 'queue');
    K8sRules.suppress(cache, 'AGT-K8S-18', 'The vendor publishes only latest; the registry mirror pins it by digest.');
    const pinned = K8sRules.check(app).filter((f) => f.ruleId === 'AGT-K8S-18').map((f) => f.object);
    expect(pinned).toEqual(['Deployment agents/queue']);
  });

  test('on a chart (or the app) cover everything in it', () => {
    const { app, chart } = appWithChart();
    vendorDeployment(chart, 'cache');
    vendorDeployment(chart, 'queue');
    K8sRules.suppress(app, 'AGT-K8S-23', 'The namespace has a default-deny policy managed by the platform team.');
    expect(ids(K8sRules.check(app))).not.toContain('AGT-K8S-23');
    expect(ids(K8sRules.check(app))).toContain('AGT-K8S-18');
  });

  test('by object name, for objects one does not construct (a Helm chart, an Include)', () => {
    const { app, chart } = appWithChart();
    const imported = new Chart(chart, 'redis-chart', { namespace: NS });
    vendorDeployment(imported, 'redis-master', 'redis');
    vendorDeployment(imported, 'redis-replica', 'redis-replica');
    K8sRules.suppressObject(chart, { kind: 'Deployment', name: 'redis', namespace: NS }, 'AGT-K8S-18', 'Bitnami chart pinned by the Helm chart version in Chart.lock.');
    K8sRules.suppressObject(chart, { kind: 'StatefulSet', name: 'redis-replica' }, 'AGT-K8S-18', 'Wrong kind: this suppression must not apply.');
    const pinned = K8sRules.check(app).filter((f) => f.ruleId === 'AGT-K8S-18').map((f) => f.object);
    expect(pinned).toEqual(['Deployment agents/redis-replica']);
  });

  test('need a reason a reviewer can read', () => {
    const { chart } = appWithChart();
    const cache = vendorDeployment(chart, 'cache');
    for (const reason of ['', '   ', 'n/a', 'todo fix']) {
      expect(() => K8sRules.suppress(cache, 'AGT-K8S-18', reason)).toThrow(
        `K8sRules.suppress on 'platform/cache': suppressing AGT-K8S-18 needs a reason of at least 10 characters (got ${JSON.stringify(reason)}): say why the rule does not apply to these objects, for the reviewer.`,
      );
    }
    expect(() => K8sRules.suppressObject(chart, { name: 'redis' }, 'AGT-K8S-18', '')).toThrow(/^K8sRules\.suppressObject\(redis\) on 'platform': suppressing AGT-K8S-18 needs a reason/);
    expect(() => K8sRules.suppress(cache, '', 'The vendor image is mirrored and pinned.')).toThrow("K8sRules.suppress on 'platform/cache': '' is not a rule id (like 'AGT-K8S-3').");
  });

  test('must name a rule of the pack', () => {
    const { app, chart } = appWithChart();
    K8sRules.suppress(vendorDeployment(chart, 'cache'), 'AGT-K8S-99', 'A rule number from an older version of the pack.');
    expect(() => K8sRules.check(app)).toThrow(/^K8sRules\.suppress on 'platform\/cache': 'AGT-K8S-99' is not a rule of the pack \(AGT-K8S-1, AGT-K8S-2, .*AGT-K8S-24\)\.$/);
    K8sRules.applyTo(app);
    expect(() => app.synth()).toThrow(/'AGT-K8S-99' is not a rule of the pack/);
  });

  test('never reach the manifests', () => {
    const { app, chart } = appWithChart();
    const cache = vendorDeployment(chart, 'cache');
    K8sRules.suppress(cache, 'AGT-K8S-18', 'The vendor publishes only latest; the mirror pins it.');
    K8sRules.suppress(ApiObject.of(cache), 'AGT-K8S-20', 'A cache without a health endpoint of its own.');
    const yaml = JSON.stringify(synth(chart));
    expect(yaml).not.toMatch(/AGT-K8S|mirror pins|health endpoint/);
    expect(ids(K8sRules.check(app))).not.toContain('AGT-K8S-20');
  });
});

describe('checkManifests on plain objects (CI, imported YAML)', () => {
  const objects = (): Json[] => Testing.synth(((c) => (vendorDeployment(c, 'cache'), vendorDeployment(c, 'queue'), c))(appWithChart().chart)) as Json[];

  test('suppressions by rule, optionally by object', () => {
    const all = checkManifests(objects());
    const suppressed = checkManifests(objects(), {
      suppressions: [
        { ruleId: 'AGT-K8S-18', reason: 'Images are pinned by digest at admission (Kyverno).' },
        { ruleId: 'AGT-K8S-20', reason: 'The cache has no health endpoint.', object: { name: 'cache', kind: 'Deployment' } },
      ],
    });
    expect(ids(all)).toContain('AGT-K8S-18');
    expect(ids(suppressed)).not.toContain('AGT-K8S-18');
    expect(new Set(suppressed.filter((f) => f.ruleId === 'AGT-K8S-20').map((f) => f.object))).toEqual(new Set(['Deployment agents/queue']));
    expect(all.length - suppressed.length).toBe(all.filter((f) => f.ruleId === 'AGT-K8S-18' || (f.ruleId === 'AGT-K8S-20' && f.object.endsWith('/cache'))).length);
  });

  test('a suppression without a reason, or of an unknown rule, is an error', () => {
    expect(() => checkManifests(objects(), { suppressions: [{ ruleId: 'AGT-K8S-18', reason: 'ok' }] })).toThrow(/^checkManifests: suppressions\[0\]: suppressing AGT-K8S-18 needs a reason/);
    expect(() => checkManifests(objects(), { suppressions: [{ ruleId: 'AGT-K8S-0', reason: 'A typo in the rule id.' }] })).toThrow(/^checkManifests: suppressions\[0\]: 'AGT-K8S-0' is not a rule of the pack/);
  });

  test('skips what is not a Kubernetes object', () => {
    expect(checkManifests([null, 'text', 42, { metadata: { name: 'x' } }])).toEqual([]);
  });
});
