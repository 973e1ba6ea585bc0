/**
 * The shape of a rule and of what it finds, and the engine that runs a pack over a set of
 * objects with their suppressions. Rules see plain JSON, never constructs.
 */
import { apiGroup, comparePositions, describeObject, documentPosition, isObject, namespaceOf, podTemplateOf, type Json, type PodTemplate } from './manifest';

export enum RuleLevel {
  /** Fails `app.synth()` when the pack is applied. */
  ERROR = 'error',
  /** Reported; fails synth only with `failOnWarnings`. */
  WARNING = 'warning',
}

/** What a rule reports about one field of one object. */
export interface RuleViolation {
  /** The field, from the object's root: `spec.template.spec.containers[1].securityContext.privileged`. */
  readonly path: string;
  /** What is wrong there, e.g. `must not be true`. */
  readonly problem: string;
  /**
   * How to fix it here.
   * @default - the rule's `fix`
   */
  readonly fix?: string;
}

/** A named check, cdk-nag style. */
export interface K8sRule {
  /** `AGT-K8S-<n>`: what suppressions name. */
  readonly id: string;
  /** A few words: the Pod Security Standards control, or what is checked. */
  readonly name: string;
  readonly level: RuleLevel;
  /** Why it matters, in a sentence. */
  readonly explanation: string;
  /** How to comply, in a sentence. */
  readonly fix: string;
  /** The violations of one object; `context` holds every object checked with it. */
  check(object: Json, context: RuleContext): RuleViolation[];
}

/** What a rule is, apart from its level and its check. */
export type RuleInfo = Pick<K8sRule, 'id' | 'name' | 'explanation' | 'fix'>;

/** A rule checking each object's pod template (objects without one pass). */
export function podRule(info: RuleInfo, level: RuleLevel, check: (t: PodTemplate, object: Json, context: RuleContext) => RuleViolation[]): K8sRule {
  return {
    ...info,
    level,
    check: (object, context) => {
      const template = context.podTemplate(object);
      return template ? check(template, object, context) : [];
    },
  };
}

/** One violation of one rule by one object. */
export interface K8sFinding {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly level: RuleLevel;
  /** `Deployment agents/support-chat`. */
  readonly object: string;
  /** The object's position in the checked list. */
  readonly objectIndex: number;
  readonly path: string;
  readonly problem: string;
  readonly fix: string;
}

/** `[AGT-K8S-13 Privilege Escalation] Deployment agents/x: spec...allowPrivilegeEscalation: must be false. Fix: ...` */
export function formatFinding(f: K8sFinding): string {
  return `[${f.ruleId} ${f.ruleName}] ${f.object}: ${f.path}: ${f.problem}. Fix: ${f.fix}`;
}

/** Every object checked together, for the rules that relate objects (a PDB to its Deployment). */
export class RuleContext {
  private readonly templates = new WeakMap<Json, PodTemplate | undefined>();
  private readonly indexes = new WeakMap<Json, number>();

  constructor(public readonly objects: readonly unknown[]) {
    objects.forEach((o, i) => {
      if (isObject(o)) this.indexes.set(o, i);
    });
  }

  /** The object's pod template, if it has one. */
  public podTemplate(obj: Json): PodTemplate | undefined {
    if (!this.templates.has(obj)) this.templates.set(obj, podTemplateOf(obj));
    return this.templates.get(obj);
  }

  /** Objects of an API group ('' for core) and kind in a namespace (undefined: objects without one). */
  public find(group: string, kind: string, namespace: string | undefined): Json[] {
    return this.objects.filter((o): o is Json => isObject(o) && o.kind === kind && apiGroup(o) === group && namespaceOf(o) === namespace);
  }

  /** Every object with a pod template in a namespace. */
  public workloads(namespace: string | undefined): { readonly object: Json; readonly template: PodTemplate }[] {
    const found: { object: Json; template: PodTemplate }[] = [];
    for (const o of this.objects) {
      if (!isObject(o) || namespaceOf(o) !== namespace) continue;
      const template = this.podTemplate(o);
      if (template) found.push({ object: o, template });
    }
    return found;
  }

  /** `Deployment agents/support-chat`. */
  public describe(obj: Json): string {
    return describeObject(obj, this.indexes.get(obj) ?? -1);
  }
}

/** A rule turned off for some objects, and why. */
export interface RuleSuppression {
  readonly ruleId: string;
  /** Why the rule does not apply: a reviewer reads it. At least 10 characters. */
  readonly reason: string;
}

export const MIN_REASON_LENGTH = 10;

/** Throws unless the suppression names a rule and says why; `where` says where it was made. */
export function checkSuppression(where: string, ruleId: string, reason: string): void {
  if (typeof ruleId !== 'string' || !/^\S+$/.test(ruleId)) throw new Error(`${where}: '${ruleId}' is not a rule id (like 'AGT-K8S-3').`);
  if (typeof reason !== 'string' || reason.trim().length < MIN_REASON_LENGTH) {
    throw new Error(
      `${where}: suppressing ${ruleId} needs a reason of at least ${MIN_REASON_LENGTH} characters (got ${JSON.stringify(reason)}): say why the rule does not apply to these objects, for the reviewer.`,
    );
  }
}

/** Throws for a suppression naming a rule the pack does not have (a typo, or a rule since removed). */
export function checkRuleId(where: string, ruleId: string, rules: readonly K8sRule[]): void {
  if (!rules.some((r) => r.id === ruleId)) {
    throw new Error(`${where}: '${ruleId}' is not a rule of the pack (${rules.map((r) => r.id).join(', ')}).`);
  }
}

/**
 * Runs `rules` over `objects`, but not those `suppressionsOf(index)` turns off for an object.
 * Findings come object by object, in the order the fields stand in the object, then by rule.
 */
export function runRules(objects: readonly unknown[], rules: readonly K8sRule[], suppressionsOf: (index: number) => readonly RuleSuppression[]): K8sFinding[] {
  const context = new RuleContext(objects);
  const found: { finding: K8sFinding; position: number[]; rule: number }[] = [];
  objects.forEach((obj, index) => {
    if (!isObject(obj) || typeof obj.kind !== 'string') return;
    const suppressed = new Set(suppressionsOf(index).map((s) => s.ruleId));
    rules.forEach((rule, ruleIndex) => {
      if (suppressed.has(rule.id)) return;
      for (const v of rule.check(obj, context)) {
        found.push({
          finding: {
            ruleId: rule.id,
            ruleName: rule.name,
            level: rule.level,
            object: describeObject(obj, index),
            objectIndex: index,
            path: v.path,
            problem: v.problem,
            fix: v.fix ?? rule.fix,
          },
          position: documentPosition(obj, v.path),
          rule: ruleIndex,
        });
      }
    });
  });
  found.sort((a, b) => a.finding.objectIndex - b.finding.objectIndex || comparePositions(a.position, b.position) || a.rule - b.rule);
  return found.map((f) => f.finding);
}
