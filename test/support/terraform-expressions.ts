/**
 * The Terraform expressions in synthesized Terraform JSON, checked without Terraform: every
 * `${...}` in every string is parsed by HCL's own parser (the WebAssembly build cdktf uses,
 * @cdktf/hcl2json), every function it calls is a Terraform function, and every reference names a
 * resource or data source of the same JSON (`self` only in lifecycle conditions). `terraform
 * validate` cannot run here (it needs the providers), so this is what stands in for its syntax
 * and reference checks; attribute names and types are left to the provider bindings.
 */
import { getExpressionAst } from '@cdktf/hcl2json';

type Json = Record<string, any>;

/** Terraform's built-in functions (1.5 to 1.9). */
const FUNCTIONS = new Set(
  `abs abspath alltrue anytrue base64decode base64encode base64gzip base64sha256 base64sha512 basename bcrypt can ceil chomp
  chunklist cidrhost cidrnetmask cidrsubnet cidrsubnets coalesce coalescelist compact concat contains csvdecode dirname distinct
  element endswith file filebase64 filebase64sha256 filebase64sha512 fileexists filemd5 fileset filesha1 filesha256 filesha512
  flatten floor format formatdate formatlist indent index issensitive join jsondecode jsonencode keys length log lookup lower
  matchkeys max md5 merge min nonsensitive one parseint pathexpand plantimestamp pow range regex regexall replace reverse
  rsadecrypt sensitive setintersection setproduct setsubtract setunion sha1 sha256 sha512 signum slice sort split startswith
  strcontains strrev substr sum templatefile textdecodebase64 textencodebase64 timeadd timecmp timestamp title tobool tolist
  tomap tonumber toset tostring transpose trim trimprefix trimspace trimsuffix try type upper urlencode uuid uuidv5 values
  yamldecode yamlencode zipmap`.split(/\s+/),
);

/** Roots a reference may start with besides resource types. */
const ROOTS = new Set(['data', 'var', 'local', 'module', 'count', 'each', 'path', 'terraform']);

export interface ExpressionProblem {
  /** Where in the JSON: resource.aws_x.Name.attribute... */
  readonly at: string;
  readonly expression: string;
  readonly problem: string;
}

/**
 * The `${...}` interpolations of a Terraform JSON string, outermost only (nested templates inside
 * them are part of their expression); `$${` is a literal.
 */
export function interpolations(text: string): string[] {
  const found: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      i++;
      continue;
    }
    const start = i;
    // A stack of modes: 'e' inside an expression (with its brace depth), 's' inside a quoted string in it.
    const stack: Array<{ mode: 'e' | 's'; depth: number }> = [{ mode: 'e', depth: 1 }];
    i += 2;
    while (i < text.length && stack.length > 0) {
      const top = stack[stack.length - 1];
      const c = text[i];
      if (top.mode === 's') {
        if (c === '\\') i++;
        else if (c === '"') stack.pop();
        else if (text.startsWith('${', i)) {
          stack.push({ mode: 'e', depth: 1 });
          i++;
        }
      } else if (c === '"') stack.push({ mode: 's', depth: 0 });
      else if (c === '{') top.depth++;
      else if (c === '}' && --top.depth === 0) stack.pop();
      i++;
    }
    // Unbalanced: the rest of the string, for the parser to report.
    found.push(text.slice(start, i));
  }
  return found;
}

/** Every problem of every expression in `tf` (the parsed cdk.tf.json of a stack). */
export async function expressionProblems(tf: Json): Promise<ExpressionProblem[]> {
  const problems: ExpressionProblem[] = [];
  const strings: Array<{ at: string; text: string }> = [];
  const walk = (value: unknown, at: string): void => {
    if (typeof value === 'string') {
      if (value.includes('${')) strings.push({ at, text: value });
    } else if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${at}[${i}]`));
    else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) if (k !== '//') walk(v, at ? `${at}.${k}` : k);
    }
  };
  for (const section of ['resource', 'data', 'output', 'locals', 'provider', 'terraform']) walk(tf[section], section);

  for (const { at, text } of strings) {
    for (const expression of interpolations(text)) {
      let ast: Json | null;
      try {
        ast = await getExpressionAst('main.tf.json', `"${expression}"`);
      } catch (error) {
        problems.push({ at, expression, problem: `does not parse: ${String((error as Error).message).replace(/^.*?: main\.tf\.json:/, '')}` });
        continue;
      }
      const visit = (node: Json | null | undefined): void => {
        if (!node) return;
        if (node.type === 'function' && !FUNCTIONS.has(node.meta?.name)) {
          problems.push({ at, expression, problem: `calls ${node.meta?.name}(), which is not a Terraform function` });
        }
        if (node.type === 'scopeTraversal') {
          const problem = referenceProblem(tf, String(node.meta.fullAccessor), at);
          if (problem) problems.push({ at, expression, problem });
        }
        for (const child of node.children ?? []) visit(child);
      };
      visit(ast);
    }
  }
  return problems;
}

function referenceProblem(tf: Json, accessor: string, at: string): string | undefined {
  const [root, type, name] = accessor.split('.');
  if (root === 'self') return /\.lifecycle\.(pre|post)condition\[/.test(at) ? undefined : `refers to self outside a lifecycle condition (${accessor})`;
  if (root === 'data') {
    return tf.data?.[type]?.[name] ? undefined : `refers to data.${type}.${name}, which is not in the Terraform`;
  }
  if (ROOTS.has(root)) return undefined;
  if (tf.resource?.[root]?.[type]) return undefined;
  return tf.resource?.[root] ? `refers to ${root}.${type}, which is not in the Terraform` : `refers to ${accessor}: no resource type ${root} in the Terraform`;
}
