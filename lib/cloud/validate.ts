/**
 * Checks of bring-your-own ids and settings, thrown at construction with the prop and the fix.
 * Tokens (a data source, a variable, remote state) are accepted as they are: they resolve at apply.
 */
import { Token } from 'cdktf';

/** The retention values CloudWatch Logs accepts. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const EXAMPLES: Record<string, string> = { vpc: 'vpc-0a1b2c3d4e5f67890', subnet: 'subnet-0a1b2c3d4e5f67890', sg: 'sg-0a1b2c3d4e5f67890' };

/** An id such as 'vpc-0abc...': required, and of the right kind when it is a literal. */
export function checkResourceId(owner: string, prop: string, value: string | undefined, kind: string): void {
  if (value === undefined || value === null || value === '') {
    throw new Error(`${owner}: '${prop}' is required: the id of an existing ${describe(kind)} (e.g. '${EXAMPLES[kind]}'), or a token from a data source or variable.`);
  }
  if (!Token.isUnresolved(value) && !new RegExp(`^${kind}-[0-9a-f]{8,17}$`).test(value)) {
    throw new Error(`${owner}: '${prop}' ('${value}') is not a ${describe(kind)} id; expected '${kind}-' and 8 or 17 hex digits (e.g. '${EXAMPLES[kind]}').`);
  }
}

/** A list of ids with a minimum length (a token list is accepted as it is). */
export function checkResourceIds(owner: string, prop: string, values: string[] | undefined, kind: string, min: number, why: string): void {
  if (values === undefined || values === null || (Array.isArray(values) && values.length === 0)) {
    throw new Error(`${owner}: '${prop}' is required: ${why} (e.g. ['${EXAMPLES[kind]}', ...]).`);
  }
  if (Token.isUnresolved(values)) return;
  if (values.length < min) {
    throw new Error(`${owner}: '${prop}' has ${values.length} id(s) but needs at least ${min}: ${why}.`);
  }
  values.forEach((value, i) => checkResourceId(owner, `${prop}[${i}]`, value, kind));
  const duplicates = values.filter((v, i) => !Token.isUnresolved(v) && values.indexOf(v) !== i);
  if (duplicates.length) throw new Error(`${owner}: '${prop}' lists ${duplicates[0]} twice; give distinct ids.`);
}

export function checkLogRetention(owner: string, prop: string, days: number): void {
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    throw new Error(`${owner}: '${prop}' (${days}) must be a value CloudWatch Logs accepts: ${LOG_RETENTION_DAYS.join(', ')}.`);
  }
}

function describe(kind: string): string {
  return kind === 'sg' ? 'security group' : kind === 'vpc' ? 'VPC' : kind;
}
