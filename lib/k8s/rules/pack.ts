/**
 * The cdk-agents Kubernetes rule pack, and running it on plain objects: what `K8sRules.applyTo`
 * runs at synth, and what a CI job runs on any manifests (`checkManifests(objects)`).
 */
import { HARDENING_RULES } from './hardening';
import { isObject, nameOf, namespaceOf } from './manifest';
import { NETWORK_RULES } from './network-policy';
import { POD_SECURITY_RULES } from './pod-security';
import { RELIABILITY_RULES } from './reliability';
import { checkRuleId, checkSuppression, runRules, type K8sFinding, type K8sRule, type RuleSuppression } from './rule';

/** Every rule, AGT-K8S-1 to AGT-K8S-24: Pod Security Standards "restricted" first, one rule per control. */
export const K8S_RULES: readonly K8sRule[] = [...POD_SECURITY_RULES, ...HARDENING_RULES, ...RELIABILITY_RULES, ...NETWORK_RULES];

/** Objects by name, for suppressions on objects one does not construct (an imported chart's). */
export interface ObjectSelector {
  /** metadata.name. */
  readonly name: string;
  /**
   * The object's kind (`Deployment`).
   * @default - any kind
   */
  readonly kind?: string;
  /**
   * metadata.namespace.
   * @default - any namespace
   */
  readonly namespace?: string;
}

/** A suppression in `checkManifests`. */
export interface ManifestSuppression extends RuleSuppression {
  /**
   * The objects it covers.
   * @default - every object
   */
  readonly object?: ObjectSelector;
}

export function selectsObject(selector: ObjectSelector, obj: unknown): boolean {
  return (
    isObject(obj) &&
    nameOf(obj) === selector.name &&
    (selector.kind === undefined || obj.kind === selector.kind) &&
    (selector.namespace === undefined || namespaceOf(obj) === selector.namespace)
  );
}

/** Options of `checkManifests`. */
export interface CheckManifestsOptions {
  /**
   * The rules to run.
   * @default K8S_RULES
   */
  readonly rules?: readonly K8sRule[];
  /**
   * Rules turned off, each with its reason.
   * @default - none
   */
  readonly suppressions?: readonly ManifestSuppression[];
}

/**
 * Runs the pack on Kubernetes objects as plain JSON (chart.toJson(), or YAML documents parsed),
 * all checked together: a NetworkPolicy or PodDisruptionBudget covers the pods of its namespace
 * among them. Returns every finding, errors and warnings, object by object; [] when all pass.
 */
export function checkManifests(objects: readonly unknown[], options: CheckManifestsOptions = {}): K8sFinding[] {
  const rules = options.rules ?? K8S_RULES;
  const suppressions = options.suppressions ?? [];
  suppressions.forEach((s, i) => {
    checkSuppression(`checkManifests: suppressions[${i}]`, s.ruleId, s.reason);
    checkRuleId(`checkManifests: suppressions[${i}]`, s.ruleId, [...K8S_RULES, ...rules]);
  });
  return runRules(objects, rules, (index) => suppressions.filter((s) => !s.object || selectsObject(s.object, objects[index])));
}
