/**
 * Names and labels of the emitted objects: derived from one DNS label so they stay stable
 * across synths (small GitOps diffs) and every object of a construct is found by its labels.
 */
import { Chart } from 'cdk8s';
import { Construct } from 'constructs';

/** A Service name must be a DNS-1035 label: it starts with a letter. */
export const DNS_LABEL = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const NAMESPACE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SECRET_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

/** 'SupportChat' or 'support_chat' -> 'support-chat'. */
export function nameFromId(id: string): string {
  return id
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
}

/** The construct's name: the prop, or one derived from the construct id. */
export function resolveName(kind: string, id: string, name: string | undefined): string {
  const resolved = name ?? nameFromId(id);
  if (!DNS_LABEL.test(resolved)) {
    const from = name === undefined ? ` (derived from the construct id '${id}')` : '';
    throw new Error(
      `${kind}: 'name' ('${resolved}')${from} must be a DNS label: lowercase letters, digits and '-', starting with a letter, at most 63 characters. Set 'name' explicitly.`,
    );
  }
  return resolved;
}

/** The namespace every object of the construct goes to: the prop, else the chart's. */
export function resolveNamespace(scope: Construct, namespace: string | undefined): string | undefined {
  if (namespace !== undefined && !NAMESPACE.test(namespace)) {
    throw new Error(`'namespace' ('${namespace}') must be a DNS label (lowercase letters, digits and '-', at most 63 characters).`);
  }
  return namespace ?? Chart.of(scope).namespace;
}

export function checkSecretName(what: string, name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new Error(`${what}: the Secret name '${name}' is not a valid Kubernetes name (lowercase letters, digits, '-' and '.').`);
  }
}

export function checkSecretKey(what: string, key: string): void {
  if (!SECRET_KEY.test(key)) {
    throw new Error(`${what}: the Secret key '${key}' is not valid (letters, digits, '-', '_' and '.').`);
  }
}

export const PART_OF = 'cdk-agents';

/** The labels a construct's Deployment selects its pods by; never change them (selectors are immutable). */
export function selectorLabels(name: string, component: string): Record<string, string> {
  return { 'app.kubernetes.io/name': name, 'app.kubernetes.io/component': component };
}

/** The labels on every emitted object. */
export function commonLabels(name: string, component: string): Record<string, string> {
  return { ...selectorLabels(name, component), 'app.kubernetes.io/part-of': PART_OF, 'app.kubernetes.io/managed-by': 'cdk8s' };
}
