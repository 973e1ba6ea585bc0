/**
 * What the guardrails report: one decision per rule that fired, for the caller to count
 * (guardrail_decisions_total{direction,rule,action}), audit, and act on.
 */

/** Where a finding was made: the new user input, a tool result sent back to the model, or the answer. */
export type Direction = 'input' | 'output' | 'tool_result';

/** The effective action of a rule that is on (a rule set to 'off' is never evaluated). */
export type RuleAction = 'block' | 'redact' | 'warn';

export interface GuardDecision {
  direction: Direction;
  /** The rule id, e.g. input.injection or output.secret.aws_access_key. */
  rule: string;
  action: RuleAction;
  /** Human-readable explanation; never contains the matched text. */
  reason: string;
  /** Injection score in [0,1] (input.injection only). */
  score?: number;
  /** How many matches this decision covers. */
  count?: number;
}
