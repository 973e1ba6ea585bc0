/**
 * IRSA (IAM roles for service accounts, EKS): a ServiceAccount annotated with an IAM role ARN
 * gets that role's credentials in its pods. The cloud side creates the role, trusting exactly
 * that ServiceAccount; `AgentPlatform.roleOf(agent)` derives the same ARN from the platform spec.
 */
import type * as kplus from 'cdk8s-plus-28';
import { IAM_ROLE_ARN, IRSA_ROLE_ANNOTATION } from '../spec/platform';

/** STS in the pod's own region: no dependency on the global endpoint (us-east-1). */
const STS_REGIONAL_ENDPOINTS_ANNOTATION = 'eks.amazonaws.com/sts-regional-endpoints';

/** Whether `arn` is the ARN of an IAM role. */
export function isRoleArn(arn: unknown): arn is string {
  return typeof arn === 'string' && IAM_ROLE_ARN.test(arn);
}

/** The IAM role a ServiceAccount assumes through IRSA: `AwsRole.fromArn(arn)`, or `AgentPlatform.roleOf(agent)`. */
export class AwsRole {
  /** The role `arn` (arn:aws:iam::ACCOUNT:role/NAME). */
  public static fromArn(arn: string): AwsRole {
    if (!isRoleArn(arn)) {
      throw new Error(
        `AwsRole.fromArn: 'arn' ('${arn}') must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME with the 12-digit account id; ` +
          `derive it from the platform spec with AgentPlatform.roleOf(agent) rather than writing it by hand.`,
      );
    }
    return new AwsRole(arn);
  }

  /** The 12-digit account the role is in. */
  public readonly accountId: string;
  /** The role's name (its path included). */
  public readonly roleName: string;

  private constructor(
    /** The role's ARN: the value of the ServiceAccount's `eks.amazonaws.com/role-arn` annotation. */
    public readonly arn: string,
  ) {
    const match = IAM_ROLE_ARN.exec(arn)!;
    this.accountId = match[2];
    this.roleName = match[3];
  }
}

/**
 * Annotates `serviceAccount` with the role, after checking the prop holds an AwsRole (not a bare
 * string from JavaScript). Returns whether a role was bound.
 */
export function bindAwsRole(owner: string, prop: string, serviceAccount: kplus.ServiceAccount, role: AwsRole | undefined): boolean {
  if (role === undefined) return false;
  if (!(role instanceof AwsRole)) {
    throw new Error(
      `${owner}: '${prop}' must be an AwsRole: AwsRole.fromArn('arn:aws:iam::ACCOUNT:role/NAME'), or AgentPlatform.roleOf(agent) to derive it from the platform spec (got ${JSON.stringify(role)}).`,
    );
  }
  serviceAccount.metadata.addAnnotation(IRSA_ROLE_ANNOTATION, role.arn);
  serviceAccount.metadata.addAnnotation(STS_REGIONAL_ENDPOINTS_ANNOTATION, 'true');
  return true;
}
