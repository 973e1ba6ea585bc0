/**
 * The Kubernetes 1.28 JSON Schema (test/support/k8s-1.28.schema.json): regenerating it from
 * cdk8s-plus-28's k8s.d.ts gives the committed file byte for byte, it describes 1.28 (not an
 * older or newer API), and the generator maps each TypeScript shape to the JSON Schema it means.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildK8sSchema, renderK8sSchema, SCHEMA_FILE, type JsonSchema, type K8sSchema } from '../../scripts/k8s-schema';

const committed = JSON.parse(fs.readFileSync(SCHEMA_FILE, 'utf8')) as K8sSchema;

test('the committed schema is what scripts/k8s-schema.ts generates (else: npm run k8s-schema)', () => {
  const fresh = buildK8sSchema();
  // Name the definitions that differ first: a readable failure, not a 200 kB diff.
  const names = new Set([...Object.keys(fresh.definitions), ...Object.keys(committed.definitions)]);
  const stale = [...names].filter((n) => JSON.stringify(fresh.definitions[n]) !== JSON.stringify(committed.definitions[n]));
  expect(stale).toEqual([]);
  expect(fresh.kinds).toEqual(committed.kinds);
  expect(renderK8sSchema(fresh)).toBe(fs.readFileSync(SCHEMA_FILE, 'utf8'));
});

test('it is the 1.28 API: restartable init containers yes; lifecycle sleep (1.29) and AppArmor fields (1.30) no', () => {
  const defs = committed.definitions;
  const props = (name: string) => (defs[name] as { properties: Record<string, JsonSchema> }).properties;
  expect(props('io.k8s.api.core.v1.Container')).toHaveProperty('restartPolicy');
  expect(props('io.k8s.api.core.v1.LifecycleHandler')).not.toHaveProperty('sleep');
  expect(props('io.k8s.api.core.v1.PodSecurityContext')).not.toHaveProperty('appArmorProfile');
  expect(Object.keys(defs).filter((n) => n.includes('AppArmor'))).toEqual([]);
  const served = committed.kinds.map((k) => `${k.apiVersion} ${k.kind}`);
  expect(served).toEqual(expect.arrayContaining([
    'apps/v1 Deployment', 'autoscaling/v2 HorizontalPodAutoscaler', 'policy/v1 PodDisruptionBudget',
    'networking.k8s.io/v1 NetworkPolicy', 'batch/v1 CronJob', 'v1 ConfigMap', 'v1 ServiceAccount',
  ]));
  // Removed before 1.28.
  expect(served).not.toContain('policy/v1beta1 PodDisruptionBudget');
  expect(served).not.toContain('autoscaling/v2beta2 HorizontalPodAutoscaler');
  expect(served).not.toContain('batch/v1beta1 CronJob');
});

test('JSON property names, required fields, integers and closed objects come from the @schema tags', () => {
  const defs = committed.definitions;
  const podSpec = defs['io.k8s.api.core.v1.PodSpec'] as { properties: Record<string, JsonSchema>; additionalProperties: boolean };
  expect(Object.keys(podSpec.properties)).toEqual(expect.arrayContaining(['hostIPC', 'hostPID', 'hostNetwork']));
  expect(podSpec.properties).not.toHaveProperty('hostIpc');
  expect(podSpec.additionalProperties).toBe(false);
  expect(podSpec.properties.containers).toEqual({ type: 'array', items: { $ref: '#/definitions/io.k8s.api.core.v1.Container' } });
  expect(defs['io.k8s.api.apps.v1.DeploymentSpec']).toMatchObject({ required: ['selector', 'template'], properties: { replicas: { type: 'integer' } } });
  expect(defs['io.k8s.api.core.v1.Container']).toMatchObject({ required: ['name'] });
  // The only doubles in the 1.28 OpenAPI document.
  expect(defs['io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps']).toMatchObject({
    properties: { $ref: { type: 'string' }, maximum: { type: 'number' }, maxLength: { type: 'integer' } },
  });
});

test('the generator maps maps, lists, scalars, int-or-string, quantities, dates and enums', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-schema-'));
  const dts = path.join(dir, 'k8s.d.ts');
  fs.writeFileSync(dts, `
/** @schema io.k8s.api.example.v1.Widget */
export declare class KubeWidget {}
/** @schema io.k8s.api.example.v1.Widget */
export interface KubeWidgetProps {
  /** @schema io.k8s.api.example.v1.Widget#spec */
  readonly spec: WidgetSpec;
}
/** @schema io.k8s.api.example.v1.WidgetSpec */
export interface WidgetSpec {
  /** @schema io.k8s.api.example.v1.WidgetSpec#hostIPC */
  readonly hostIpc?: boolean;
  /** @schema io.k8s.api.example.v1.WidgetSpec#labels */
  readonly labels?: { [key: string]: string };
  /** @schema io.k8s.api.example.v1.WidgetSpec#limits */
  readonly limits?: { [key: string]: Quantity };
  /** @schema io.k8s.api.example.v1.WidgetSpec#port */
  readonly port: IntOrString;
  /** @schema io.k8s.api.example.v1.WidgetSpec#groups */
  readonly groups?: number[];
  /** @schema io.k8s.api.example.v1.WidgetSpec#since */
  readonly since?: Date;
  /** @schema io.k8s.api.example.v1.WidgetSpec#raw */
  readonly raw?: any;
  /** @schema io.k8s.api.example.v1.WidgetSpec#kind */
  readonly kind?: WidgetKind;
}
export declare enum WidgetKind { WIDGET = "Widget" }
`);
  try {
    const schema = buildK8sSchema(dts, (name) => ({ apiVersion: 'example/v1', kind: name.replace(/^Kube/, '') }));
    expect(schema.kinds).toEqual([{ apiVersion: 'example/v1', kind: 'Widget', definition: 'io.k8s.api.example.v1.Widget' }]);
    expect(schema.definitions['io.k8s.api.example.v1.Widget']).toEqual({
      type: 'object',
      properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, spec: { $ref: '#/definitions/io.k8s.api.example.v1.WidgetSpec' } },
      required: ['spec'],
      additionalProperties: false,
    });
    expect(schema.definitions['io.k8s.api.example.v1.WidgetSpec']).toEqual({
      type: 'object',
      properties: {
        hostIPC: { type: 'boolean' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        limits: { type: 'object', additionalProperties: { $ref: '#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity' } },
        port: { $ref: '#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString' },
        groups: { type: 'array', items: { type: 'integer' } },
        since: { type: 'string' },
        raw: {},
        kind: { type: 'string', enum: ['Widget'] },
      },
      required: ['port'],
      additionalProperties: false,
    });
    expect(schema.definitions['io.k8s.apimachinery.pkg.util.intstr.IntOrString']).toEqual({ type: ['string', 'integer'] });

    // A shape it does not understand is an error, not a silently permissive schema.
    fs.appendFileSync(dts, `
/** @schema io.k8s.api.example.v1.Odd */
export interface Odd {
  /** @schema io.k8s.api.example.v1.Odd#either */
  readonly either?: string | boolean;
}
`);
    expect(() => buildK8sSchema(dts, () => ({ apiVersion: 'example/v1', kind: 'Widget' }))).toThrow(
      'io.k8s.api.example.v1.Odd#either: unsupported type string | boolean',
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
