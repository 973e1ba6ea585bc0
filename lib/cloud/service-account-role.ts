/**
 * ServiceAccountRole: an IAM role a Kubernetes ServiceAccount assumes through IRSA. The trust
 * policy names the exact namespace and ServiceAccount (no wildcard subject), and the permissions
 * are named actions on named resources.
 */
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { Lazy, Token } from 'cdktf';
import { Construct } from 'constructs';
import { IRSA_AUDIENCE } from '../spec/platform';
import { checkStatements, policyDocument, type PolicyStatement } from './iam-policy';

export interface ServiceAccountRoleProps {
  /** The role's name (PlatformNames.agent(name).roleName for an agent). */
  readonly roleName: string;
  /** The ARN of the cluster's IAM OIDC identity provider (PlatformNames.oidcProviderArn). */
  readonly oidcProviderArn: string;
  /** The cluster's OIDC issuer without https:// (PlatformNames.oidcIssuer). */
  readonly oidcIssuer: string;
  /** The ServiceAccount's namespace. */
  readonly namespace: string;
  /** The ServiceAccount's name. */
  readonly serviceAccount: string;
  /**
   * What the role may do; more with `addToPolicy()`.
   * @default - nothing
   */
  readonly statements?: readonly PolicyStatement[];
  /**
   * Shown on the role.
   * @default - 'IRSA role of <namespace>/<serviceAccount>'
   */
  readonly description?: string;
  /**
   * A permissions boundary your organization requires on roles.
   * @default - none
   */
  readonly permissionsBoundaryArn?: string;
  /**
   * Tags on the role.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

export class ServiceAccountRole extends Construct {
  /** The role (the construct's default child). */
  public readonly role: IamRole;
  /** The inline policy, once a statement is added. */
  public policy?: IamRolePolicy;
  private readonly statements: PolicyStatement[] = [];
  private readonly owner: string;

  constructor(scope: Construct, id: string, props: ServiceAccountRoleProps) {
    super(scope, id);
    this.owner = `ServiceAccountRole '${props.roleName}'`;
    if (!Token.isUnresolved(props.roleName) && !/^[\w+=,.@-]{1,64}$/.test(props.roleName)) {
      throw new Error(`${this.owner}: 'roleName' must be 1-64 letters, digits and +=,.@_- (IAM's rule).`);
    }
    if (!props.namespace || !props.serviceAccount) {
      throw new Error(`${this.owner}: 'namespace' and 'serviceAccount' are required: the trust policy binds the role to exactly one ServiceAccount.`);
    }
    if (props.oidcIssuer.startsWith('https://')) {
      throw new Error(`${this.owner}: 'oidcIssuer' ('${props.oidcIssuer}') must be given without https:// (as in the IAM condition keys); use PlatformNames.oidcIssuer.`);
    }
    this.role = new IamRole(this, 'Resource', {
      name: props.roleName,
      description: props.description ?? `IRSA role of ${props.namespace}/${props.serviceAccount}`,
      assumeRolePolicy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'ServiceAccountViaIrsa',
            Effect: 'Allow',
            Principal: { Federated: props.oidcProviderArn },
            Action: 'sts:AssumeRoleWithWebIdentity',
            Condition: {
              StringEquals: {
                // Exactly this ServiceAccount: a StringLike '*' here would let every pod of the cluster in.
                [`${props.oidcIssuer}:sub`]: `system:serviceaccount:${props.namespace}:${props.serviceAccount}`,
                [`${props.oidcIssuer}:aud`]: IRSA_AUDIENCE,
              },
            },
          },
        ],
      }),
      permissionsBoundary: props.permissionsBoundaryArn,
      tags: props.tags,
    });
    for (const statement of props.statements ?? []) this.addToPolicy(statement);
  }

  /** The role's ARN (resolves at apply; PlatformNames gives the same value before). */
  public get arn(): string {
    return this.role.arn;
  }

  /** Allows more: the statement is checked (named actions only) and lands in the role's inline policy. */
  public addToPolicy(statement: PolicyStatement): void {
    checkStatements(this.owner, [statement]);
    if (this.statements.some((s) => s.sid === statement.sid)) {
      throw new Error(`${this.owner}: a statement '${statement.sid}' exists already; give each statement its own sid.`);
    }
    this.statements.push(statement);
    this.policy ??= new IamRolePolicy(this, 'Policy', {
      name: 'permissions',
      role: this.role.name,
      policy: Lazy.stringValue({ produce: () => policyDocument(this.statements) }),
    });
  }
}
