/**
 * The Terraform expressions in synthesized Terraform JSON, checked without Terraform: every
 * `${...}` in every string is parsed by HCL's own parser (the WebAssembly build cdktf uses,
 * @cdktf/hcl2json), every function it calls is a Terraform function, and every reference names a
 * resource or data source of the same JSON (`self` only in lifecycle conditions) by an attribute
 * its provider binding has. `terraform validate` cannot run here (it needs the providers), so this
 * stands in for its syntax and reference checks; types are left to the provider bindings.
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
  const segments = accessor.split('.').map((s) => s.replace(/\[.*$/, ''));
  const [root, type, name] = segments;
  if (root === 'self') {
    const block = /^(resource|data)\.([a-z0-9_]+)\.[^.]+\.lifecycle\.(pre|post)condition\[/.exec(at);
    if (!block) return `refers to self outside a lifecycle condition (${accessor})`;
    return attributeProblem(block[1] === 'data', block[2], segments[1], accessor);
  }
  if (root === 'data') {
    if (!tf.data?.[type]?.[name]) return `refers to data.${type}.${name}, which is not in the Terraform`;
    return attributeProblem(true, type, segments[3], accessor);
  }
  if (ROOTS.has(root)) return undefined;
  if (!tf.resource?.[root]) return `refers to ${accessor}: no resource type ${root} in the Terraform`;
  if (!tf.resource[root][type]) return `refers to ${root}.${type}, which is not in the Terraform`;
  return attributeProblem(false, root, segments[2], accessor);
}

/**
 * Whether the provider binding of `type` has the attribute (cdktf generates a getter per
 * attribute of the provider schema, camelCased): a misspelled attribute is a plan-time error.
 */
function attributeProblem(data: boolean, type: string, attribute: string | undefined, accessor: string): string | undefined {
  if (attribute === undefined) return undefined;
  const binding = bindingOf(data, type);
  if (!binding) return `refers to ${accessor}: no provider binding for ${data ? 'data source' : 'resource'} ${type} to check it against`;
  const getter = attribute.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
  for (let proto = binding.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    if (Object.getOwnPropertyDescriptor(proto, getter)?.get) return undefined;
  }
  return `refers to ${accessor}: ${type} has no attribute ${attribute}`;
}

const bindings = new Map<string, (new (...args: any[]) => unknown) | undefined>();

/** The cdktf class of a resource or data source type, loaded by its deep path (never the provider's index). */
function bindingOf(data: boolean, type: string): (new (...args: any[]) => unknown) | undefined {
  const key = `${data ? 'data.' : ''}${type}`;
  if (!bindings.has(key)) {
    let found: (new (...args: any[]) => unknown) | undefined;
    if (type === 'terraform_data' && !data) {
      found = require('cdktf').DataResource;
    } else if (type.startsWith('aws_')) {
      const file = `${data ? 'data-' : ''}${(data ? type : type.replace(/^aws_/, '')).replace(/_/g, '-')}`;
      try {
        const mod = require(`@cdktf/provider-aws/lib/${file}`);
        found = Object.values(mod).find((v: any) => typeof v === 'function' && v.tfResourceType === type) as typeof found;
      } catch {
        found = undefined;
      }
    }
    bindings.set(key, found);
  }
  return bindings.get(key);
}
