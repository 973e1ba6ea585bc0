/**
 * Kubernetes objects as the rules read them: plain JSON as synthesized (chart.toJson()) or read
 * back from YAML, whoever wrote them (cdk8s-plus, raw ApiObjects, imported Helm charts), so the
 * same rules run on our charts and on anyone's manifests.
 */

export type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asObject(value: unknown): Json {
  return isObject(value) ? value : {};
}

export function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** "Deployment agents/support-chat", "ClusterSecretStore aws"; `index` names what has no kind. */
export function describeObject(obj: unknown, index: number): string {
  if (!isObject(obj)) return `object #${index}`;
  const meta = asObject(obj.metadata);
  const kind = typeof obj.kind === 'string' ? obj.kind : `object #${index}`;
  const name = typeof meta.name === 'string' ? meta.name : typeof meta.generateName === 'string' ? `${meta.generateName}*` : '<unnamed>';
  return typeof meta.namespace === 'string' ? `${kind} ${meta.namespace}/${name}` : `${kind} ${name}`;
}

/** The API group: '' for the core group (apiVersion v1). */
export function apiGroup(obj: Json): string {
  const apiVersion = typeof obj.apiVersion === 'string' ? obj.apiVersion : '';
  return apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
}

export function namespaceOf(obj: Json): string | undefined {
  const namespace = asObject(obj.metadata).namespace;
  return typeof namespace === 'string' ? namespace : undefined;
}

export function nameOf(obj: Json): string | undefined {
  const name = asObject(obj.metadata).name;
  return typeof name === 'string' ? name : undefined;
}

/** String-valued labels of a metadata object. */
export function labelsOf(meta: Json): Record<string, string> {
  return Object.fromEntries(Object.entries(asObject(meta.labels)).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

// ---------------------------------------------------------------------------------------------
// Pod templates

export interface PodTemplate {
  /** Path of the pod spec in its object, e.g. spec.template.spec. */
  readonly specPath: string;
  readonly spec: Json;
  /** Path of the pod's metadata (its labels and annotations), e.g. spec.template.metadata. */
  readonly metaPath: string;
  readonly meta: Json;
  /** Runs until stopped (a Deployment's pods), rather than to completion (a Job's). */
  readonly longRunning: boolean;
}

/** Where each workload kind keeps its pod template (by API group and kind), and whether its pods run until stopped. */
const POD_TEMPLATE_PATHS: Record<string, { readonly at: readonly string[]; readonly longRunning: boolean }> = {
  '/Pod': { at: [], longRunning: true },
  '/PodTemplate': { at: ['template'], longRunning: false },
  '/ReplicationController': { at: ['spec', 'template'], longRunning: true },
  'apps/Deployment': { at: ['spec', 'template'], longRunning: true },
  'apps/StatefulSet': { at: ['spec', 'template'], longRunning: true },
  'apps/DaemonSet': { at: ['spec', 'template'], longRunning: true },
  'apps/ReplicaSet': { at: ['spec', 'template'], longRunning: true },
  'batch/Job': { at: ['spec', 'template'], longRunning: false },
  'batch/CronJob': { at: ['spec', 'jobTemplate', 'spec', 'template'], longRunning: false },
  'keda.sh/ScaledJob': { at: ['spec', 'jobTargetRef', 'template'], longRunning: false },
};

/** The object's pod template: Pod, PodTemplate, ReplicationController, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, KEDA ScaledJob. */
export function podTemplateOf(obj: unknown): PodTemplate | undefined {
  if (!isObject(obj) || typeof obj.apiVersion !== 'string') return undefined;
  const where = POD_TEMPLATE_PATHS[`${apiGroup(obj)}/${String(obj.kind)}`];
  if (!where) return undefined;
  let template: unknown = obj;
  for (const key of where.at) template = asObject(template)[key];
  if (!isObject(template)) return undefined;
  const prefix = where.at.join('.');
  const spec = asObject(template.spec);
  // A bare Pod that restarts never runs until stopped; one that does not is a task.
  const longRunning = where.longRunning && (spec.restartPolicy === undefined || spec.restartPolicy === 'Always');
  return {
    specPath: prefix ? `${prefix}.spec` : 'spec',
    spec,
    metaPath: prefix ? `${prefix}.metadata` : 'metadata',
    meta: asObject(template.metadata),
    longRunning,
  };
}

export type ContainerList = 'initContainers' | 'containers' | 'ephemeralContainers';

export interface ContainerAt {
  readonly path: string;
  readonly list: ContainerList;
  readonly container: Json;
}

/** The containers of the listed kinds, init containers first, each with its path. */
export function containersOf(t: PodTemplate, lists: readonly ContainerList[] = ['initContainers', 'containers', 'ephemeralContainers']): ContainerAt[] {
  const all: ContainerAt[] = [];
  for (const list of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
    if (!lists.includes(list)) continue;
    asArray(t.spec[list]).forEach((c, i) => all.push({ path: `${t.specPath}.${list}[${i}]`, list, container: asObject(c) }));
  }
  return all;
}

/** A sidecar init container (restartPolicy: Always) runs as long as the pod. */
export function isSidecarInit(c: ContainerAt): boolean {
  return c.list === 'initContainers' && c.container.restartPolicy === 'Always';
}

/** The restricted profile exempts Windows pods from the Linux-only controls. */
export function isWindows(t: PodTemplate): boolean {
  return asObject(t.spec.os).name === 'windows';
}

// ---------------------------------------------------------------------------------------------
// Label selectors

/**
 * Whether a LabelSelector (matchLabels and matchExpressions, ANDed) selects `labels`. An empty
 * selector selects everything; a missing one (undefined or null) selects nothing.
 */
export function selects(selector: unknown, labels: Record<string, string>): boolean {
  if (!isObject(selector)) return false;
  for (const [key, value] of Object.entries(asObject(selector.matchLabels))) {
    if (labels[key] !== value) return false;
  }
  for (const e of asArray(selector.matchExpressions).map(asObject)) {
    const key = String(e.key);
    const values = asArray(e.values);
    const has = Object.prototype.hasOwnProperty.call(labels, key);
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(labels[key])) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[key])) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Paths

/** `metadata.annotations["a.b/c"]`: keys that are not identifiers are quoted, as in the findings. */
export function childPath(parent: string, key: string): string {
  if (/^[A-Za-z_$][\w$-]*$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** Splits `spec.containers[0].env` or `metadata.annotations["a.b/c"]` into its keys and indexes. */
function pathSegments(path: string): (string | number)[] {
  const segments: (string | number)[] = [];
  const re = /\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  let match: RegExpExecArray | null;
  while (re.lastIndex < path.length && (match = re.exec(path)) !== null) {
    segments.push(match[1] ?? (match[2] !== undefined ? Number(match[2]) : (JSON.parse(match[3]) as string)));
  }
  return segments;
}

/**
 * Where a path falls in the object as written: the position of each key among its siblings.
 * A field that is not there sorts after those that are, under its parent.
 */
export function documentPosition(obj: unknown, path: string): number[] {
  const position: number[] = [];
  let node = obj;
  for (const segment of pathSegments(path)) {
    const index = typeof segment === 'number' ? (Array.isArray(node) && segment < node.length ? segment : -1) : isObject(node) ? Object.keys(node).indexOf(segment) : -1;
    if (index < 0) {
      position.push(Number.MAX_SAFE_INTEGER);
      break;
    }
    position.push(index);
    node = typeof segment === 'number' ? (node as unknown[])[segment] : (node as Json)[segment];
  }
  return position;
}

export function comparePositions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}
