/**
 * IAM policy documents as typed statements: identity policies only allow, and only named actions
 * (least privilege), so a wildcard is refused where it is written, not found in review.
 */

/** An Allow statement of an identity policy. */
export interface PolicyStatement {
  /** Statement id, shown in the policy: say what the permission is for. */
  readonly sid: string;
  /** Fully named actions ('sqs:SendMessage'); wildcards are refused. */
  readonly actions: readonly string[];
  /** ARNs the actions apply to. */
  readonly resources: readonly string[];
  /**
   * Conditions: operator -> key -> values, e.g. `{ StringEquals: { 'kms:ViaService': ['sqs.eu-central-1.amazonaws.com'] } }`.
   * @default - none
   */
  readonly conditions?: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>;
}

/** Throws when a statement names an action with a wildcard (or none), naming the owner and the fix. */
export function checkStatements(owner: string, statements: readonly PolicyStatement[]): void {
  for (const statement of statements) {
    if (!/^[A-Za-z0-9]+$/.test(statement.sid)) throw new Error(`${owner}: statement id '${statement.sid}' must be letters and digits only (IAM's rule for Sid).`);
    if (statement.actions.length === 0) throw new Error(`${owner}: statement '${statement.sid}' has no actions; list the actions it allows.`);
    if (statement.resources.length === 0) throw new Error(`${owner}: statement '${statement.sid}' has no resources; list the ARNs it applies to.`);
    const wildcards = statement.actions.filter((action) => action.includes('*'));
    if (wildcards.length) {
      throw new Error(
        `${owner}: statement '${statement.sid}' allows ${wildcards.map((a) => `'${a}'`).join(', ')}: wildcard actions are not allowed (least privilege); list the actions the workload calls.`,
      );
    }
  }
}

/** The policy JSON; tokens (ARNs of resources in the stack) stay in place and resolve at synth. */
export function policyDocument(statements: readonly PolicyStatement[]): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: statements.map((s) => ({
      Sid: s.sid,
      Effect: 'Allow',
      Action: [...s.actions],
      Resource: s.resources.length === 1 ? s.resources[0] : [...s.resources],
      ...(s.conditions ? { Condition: s.conditions } : {}),
    })),
  });
}
