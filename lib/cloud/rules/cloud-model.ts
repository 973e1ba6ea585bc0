/**
 * The stack as the rules see it: every resource and data source with its Terraform attributes
 * (snake_case, tokens resolved to `${type.id.attr}` references), the shape Checkov reads too, so
 * a rule can be checked against Checkov's definition line by line.
 */
import { DefaultTokenResolver, StringConcat, TerraformDataSource, TerraformElement, TerraformResource, TerraformStack, Tokenization } from 'cdktf';
import { IConstruct } from 'constructs';

export interface CloudResource {
  /** Terraform type, data sources prefixed: 'aws_sqs_queue', 'data.aws_iam_policy_document'. */
  readonly type: string;
  /** 'aws_sqs_queue.<logical id>': what references to it start with. */
  readonly address: string;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly construct: TerraformElement;
}

const RESOLVER = new DefaultTokenResolver(new StringConcat());

export class CloudModel {
  /** Resolves every resource and data source of the stack the scope is in. */
  public static of(scope: IConstruct): CloudModel {
    const stack = TerraformStack.of(scope);
    const resources: CloudResource[] = [];
    for (const node of stack.node.findAll()) {
      const isResource = TerraformResource.isTerraformResource(node);
      if (!isResource && !(node instanceof TerraformDataSource)) continue;
      const element = node as TerraformElement;
      const tf = Tokenization.resolve(element.toTerraform(), { scope: stack, preparing: false, resolver: RESOLVER });
      const blocks: Record<string, Record<string, Record<string, unknown>>> = isResource ? tf.resource : tf.data;
      for (const [type, byId] of Object.entries(blocks ?? {})) {
        for (const [id, attributes] of Object.entries(byId)) {
          const { ['//']: _metadata, ...rest } = attributes;
          const fullType = isResource ? type : `data.${type}`;
          resources.push({ type: fullType, address: `${fullType}.${id}`, attributes: rest, construct: element });
        }
      }
    }
    return new CloudModel(resources);
  }

  private constructor(public readonly resources: readonly CloudResource[]) {}

  public ofType(type: string): CloudResource[] {
    return this.resources.filter((r) => r.type === type);
  }

  /** Resources of `type` whose attribute `attribute` refers to `target` (by reference, or by its literal name). */
  public referencing(type: string, attribute: string, target: CloudResource): CloudResource[] {
    return this.ofType(type).filter((r) => refersTo(r.attributes[attribute], target));
  }
}

/** Whether a value refers to a resource: a `${address.attr}` reference, or the resource's literal name or ARN. */
export function refersTo(value: unknown, target: CloudResource): boolean {
  if (value === undefined || value === null) return false;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  if (text.includes(`\${${target.address}.`)) return true;
  const name = target.attributes.name;
  return typeof name === 'string' && !name.includes('${') && (text === name || text.endsWith(`:${name}`) || text.endsWith(`/${name}`) || text.includes(`:${name}"`));
}

/** A string attribute that is set (a literal or a reference). */
export function isSet(value: unknown): boolean {
  return typeof value === 'string' ? value.trim() !== '' : value !== undefined && value !== null;
}

/** true, or the string 'true' (some provider arguments are typed as strings). */
export function isTrue(value: unknown): boolean {
  return value === true || value === 'true';
}

export interface PolicyDocumentStatement {
  readonly Effect?: string;
  readonly Action?: string | string[];
  readonly NotAction?: string | string[];
  readonly Principal?: unknown;
  readonly Resource?: string | string[];
  readonly Condition?: Record<string, Record<string, unknown>>;
}

/**
 * The statements of a policy attribute, or a string saying why it cannot be read. A reference
 * to an aws_iam_policy_document's json yields no statements: the document is checked itself.
 */
export function policyStatements(value: unknown): PolicyDocumentStatement[] | string {
  if (value === undefined || value === null) return [];
  if (typeof value !== 'string') return 'is not a JSON string';
  if (/^\$\{data\.aws_iam_policy_document\.[^.}]+\.json\}$/.test(value)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return 'is a Terraform expression, not literal JSON, so it cannot be checked at synth';
  }
  const statement = (parsed as { Statement?: unknown }).Statement;
  if (statement === undefined) return [];
  return (Array.isArray(statement) ? statement : [statement]) as PolicyDocumentStatement[];
}

export function asList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}
