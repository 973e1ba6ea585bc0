/**
 * CloudRules: the rule pack as an Aspect, cdk-nag style. Applied to a scope it checks every
 * resource under it when the stack is synthesized: errors fail synth (node validation), warnings
 * become annotations. A rule is silenced on a resource only by a suppression that gives a reason.
 */
import { Annotations, Aspects, IAspect, TerraformElement } from 'cdktf';
import { IConstruct } from 'constructs';
import { AWS_RULES, CloudRule, RuleLevel } from './aws-rules';
import { CloudModel } from './cloud-model';

/** A resource breaking a rule. */
export interface CloudFinding {
  readonly ruleId: string;
  readonly level: RuleLevel;
  /** 'aws_sqs_queue.<logical id>' */
  readonly address: string;
  /** The construct path of the resource. */
  readonly path: string;
  /** The resource's construct. */
  readonly construct: IConstruct;
  /** What is wrong, why it matters, the fix and the matching Checkov ids. */
  readonly message: string;
}

/** Suppressions by construct: rule id -> reason. */
const SUPPRESSIONS = new WeakMap<IConstruct, Map<string, string>>();
/** Scopes that already check at synth, so applying twice does not report twice. */
const APPLIED = new WeakSet<IConstruct>();

export class CloudRules implements IAspect {
  /** Every rule of the pack, in id order. */
  public static readonly RULES: readonly CloudRule[] = AWS_RULES;

  /** Checks every resource under `scope` (a stack, an AgentCloud, any construct) at synth. */
  public static applyTo(scope: IConstruct): void {
    Aspects.of(scope).add(new CloudRules());
  }

  /**
   * Silences `ruleId` on `construct` and every resource under it. The reason is required: it is
   * what a reviewer reads instead of the finding, and it is written next to the resource in the
   * synthesized Terraform JSON (under "//").
   */
  public static suppress(construct: IConstruct, ruleId: string, reason: string): void {
    if (!CloudRules.RULES.some((rule) => rule.id === ruleId)) {
      throw new Error(`CloudRules.suppress: unknown rule '${ruleId}' on ${construct.node.path}; the rules are ${CloudRules.RULES.map((r) => r.id).join(', ')}.`);
    }
    if (typeof reason !== 'string' || reason.trim().length < 10) {
      throw new Error(
        `CloudRules.suppress: suppressing ${ruleId} on ${construct.node.path} needs a reason (at least 10 characters) saying why the rule does not apply here.`,
      );
    }
    let suppressions = SUPPRESSIONS.get(construct);
    if (!suppressions) SUPPRESSIONS.set(construct, (suppressions = new Map()));
    suppressions.set(ruleId, reason.trim());
    if (construct instanceof TerraformElement) construct.addOverride(`//.cdk_agents_suppressions.${ruleId}`, reason.trim());
  }

  /** The reason `ruleId` is suppressed on `construct` (or a scope above it), if it is. */
  public static suppressionOf(construct: IConstruct, ruleId: string): string | undefined {
    for (const scope of [...construct.node.scopes].reverse()) {
      const reason = SUPPRESSIONS.get(scope)?.get(ruleId);
      if (reason !== undefined) return reason;
    }
    return undefined;
  }

  /** Runs the pack now on the resources under `scope` (references resolve across the whole stack). */
  public static check(scope: IConstruct): CloudFinding[] {
    const model = CloudModel.of(scope);
    const findings: CloudFinding[] = [];
    for (const resource of model.resources) {
      if (!resource.construct.node.scopes.includes(scope)) continue;
      for (const rule of CloudRules.RULES) {
        if (!rule.appliesTo.includes(resource.type) || CloudRules.suppressionOf(resource.construct, rule.id) !== undefined) continue;
        const problem = rule.check(resource, model);
        if (problem === undefined) continue;
        const checkov = rule.checkov.length ? ` (Checkov ${rule.checkov.join(', ')})` : '';
        findings.push({
          ruleId: rule.id,
          level: rule.level,
          address: resource.address,
          path: resource.construct.node.path,
          construct: resource.construct,
          message: `[${rule.id}] ${resource.address}: ${rule.title}: ${problem}. ${rule.explanation} Fix: ${rule.fix}${checkov}. Or CloudRules.suppress(resource, '${rule.id}', 'reason').`,
        });
      }
    }
    return findings;
  }

  private constructor() {}

  public visit(node: IConstruct): void {
    // Aspects visit top-down from the scope they were added to: the first node is that scope.
    if (APPLIED.has(node) || [...node.node.scopes].some((scope) => APPLIED.has(scope))) return;
    APPLIED.add(node);
    let warned = false;
    node.node.addValidation({
      validate: () => {
        const findings = CloudRules.check(node);
        if (!warned) {
          for (const warning of findings.filter((f) => f.level === RuleLevel.WARNING)) {
            Annotations.of(warning.construct).addWarning(warning.message);
          }
          warned = true;
        }
        return findings.filter((f) => f.level === RuleLevel.ERROR).map((f) => f.message);
      },
    });
  }
}
