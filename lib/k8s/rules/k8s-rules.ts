/**
 * The rule pack on a cdk8s app or chart: a validation that runs at `app.synth()` over every
 * object under it, failing synth on errors with every finding listed, and suppressions kept on
 * the constructs (construct metadata, which never reaches the manifests).
 */
import { ApiObject } from 'cdk8s';
import type { IConstruct } from 'constructs';
import { K8S_RULES, selectsObject, type ObjectSelector } from './pack';
import { checkRuleId, checkSuppression, formatFinding, RuleLevel, runRules, type K8sFinding, type K8sRule, type RuleSuppression } from './rule';

const SUPPRESSION_METADATA = 'cdk-agents/rule-suppression';

interface StoredSuppression extends RuleSuppression {
  readonly object?: ObjectSelector;
}

/** Options of `K8sRules.applyTo`. */
export interface K8sRulesOptions {
  /**
   * The rules to run.
   * @default K8S_RULES
   */
  readonly rules?: readonly K8sRule[];
  /**
   * Fail synth on warnings too, not only on errors.
   * @default false
   */
  readonly failOnWarnings?: boolean;
  /**
   * Receives each warning (once, however often the app validates).
   * @default - printed to stderr, one line each
   */
  readonly onWarning?: (finding: K8sFinding) => void;
}

const applied = new WeakSet<IConstruct>();

/** The cdk-agents Kubernetes rule pack (AGT-K8S-1...), cdk-nag style, for our charts and yours. */
export class K8sRules {
  /**
   * Runs the pack at `app.synth()` (and whenever cdk8s validates) on every object under `scope`,
   * an App or a Chart, checked together. Error findings fail synth, every one listed; warnings
   * go to `onWarning`.
   */
  public static applyTo(scope: IConstruct, options: K8sRulesOptions = {}): void {
    if (applied.has(scope)) throw new Error(`K8sRules.applyTo: the rule pack is already applied to '${scope.node.path || '<app>'}'.`);
    applied.add(scope);
    const reported = new Set<string>();
    const onWarning = options.onWarning ?? ((f: K8sFinding) => console.warn(`warning: ${formatFinding(f)}`));
    scope.node.addValidation({
      validate: () => {
        const findings = K8sRules.check(scope, options);
        const failing = findings.filter((f) => f.level === RuleLevel.ERROR || options.failOnWarnings);
        for (const warning of findings.filter((f) => !failing.includes(f))) {
          const line = formatFinding(warning);
          if (reported.has(line)) continue;
          reported.add(line);
          onWarning(warning);
        }
        if (failing.length === 0) return [];
        return [
          ...failing.map(formatFinding),
          `${failing.length} finding(s) of the cdk-agents rule pack: fix each, or if a rule does not apply, K8sRules.suppress(construct, ruleId, reason).`,
        ];
      },
    });
  }

  /** The findings of the pack on every object under `scope` now, suppressions applied: what `applyTo` checks at synth. */
  public static check(scope: IConstruct, options: Pick<K8sRulesOptions, 'rules'> = {}): K8sFinding[] {
    const rules = options.rules ?? K8S_RULES;
    const objects: { readonly apiObject: ApiObject; readonly json: unknown }[] = [];
    for (const node of scope.node.findAll()) {
      if (!ApiObject.isApiObject(node)) continue;
      try {
        objects.push({ apiObject: node, json: node.toJson() });
      } catch {
        // An object that cannot render fails synth on its own, with its construct's message.
      }
    }
    const suppressions = objects.map(({ apiObject, json }) =>
      apiObject.node.scopes.flatMap((s) =>
        s.node.metadata
          .filter((m) => m.type === SUPPRESSION_METADATA)
          .map((m) => ({ where: s.node.path, ...(m.data as StoredSuppression) }))
          .filter((entry) => !entry.object || selectsObject(entry.object, json)),
      ),
    );
    for (const entry of suppressions.flat()) checkRuleId(`K8sRules.suppress on '${entry.where}'`, entry.ruleId, [...K8S_RULES, ...rules]);
    return runRules(
      objects.map((o) => o.json),
      rules,
      (index) => suppressions[index],
    );
  }

  /**
   * Turns rule `ruleId` off for every object under `scope` (a construct, an ApiObject, a chart),
   * saying why in `reason` (at least 10 characters: a reviewer reads it).
   */
  public static suppress(scope: IConstruct, ruleId: string, reason: string): void {
    checkSuppression(`K8sRules.suppress on '${scope.node.path}'`, ruleId, reason);
    scope.node.addMetadata(SUPPRESSION_METADATA, { ruleId, reason: reason.trim() } satisfies StoredSuppression);
  }

  /**
   * Turns rule `ruleId` off for the objects under `scope` that `object` names: objects one does
   * not construct, such as an imported Helm chart's.
   */
  public static suppressObject(scope: IConstruct, object: ObjectSelector, ruleId: string, reason: string): void {
    const what = [object.kind, object.namespace ? `${object.namespace}/${object.name}` : object.name].filter(Boolean).join(' ');
    checkSuppression(`K8sRules.suppressObject(${what}) on '${scope.node.path}'`, ruleId, reason);
    scope.node.addMetadata(SUPPRESSION_METADATA, { ruleId, reason: reason.trim(), object } satisfies StoredSuppression);
  }
}
