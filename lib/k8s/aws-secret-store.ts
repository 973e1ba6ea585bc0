/**
 * AwsSecretStore: a namespaced External Secrets SecretStore (external-secrets.io/v1) reading AWS
 * Secrets Manager as its own ServiceAccount through IRSA, so no AWS key is stored in the
 * cluster. The ExternalSecrets the constructs emit read through it (`secretStore: store.ref`).
 */
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { SecretStore, SecretStoreSpecProviderAwsService } from '../imports/external-secrets.io_secretstores';
import { AWS_REGION, platformNamesFor, type PlatformNames, type PlatformSpec } from '../spec/platform';
import { AwsRole, bindAwsRole } from './aws-role';
import { commonLabels, DNS_LABEL, resolveName, resolveNamespace } from './names';
import { SecretStoreRef } from './secrets';

const COMPONENT = 'secret-store';

/** Props of an AwsSecretStore. */
export interface AwsSecretStoreProps {
  /**
   * The SecretStore's name (ExternalSecrets of its namespace refer to it).
   * @default 'aws-secrets-manager'
   */
  readonly name?: string;
  /**
   * The namespace of the SecretStore and its ServiceAccount.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /** The AWS region the secrets are in, e.g. 'eu-central-1' (the platform spec's `aws.region`). */
  readonly region: string;
  /**
   * The IAM role the store's ServiceAccount assumes: it needs secretsmanager:GetSecretValue on the
   * secrets read through the store (AgentCloud's `secretStoreRole`). Required unless `serviceAccount` is given.
   * @default - none
   */
  readonly awsRole?: AwsRole;
  /**
   * The name of the ServiceAccount the store creates.
   * @default - the store's name
   */
  readonly serviceAccountName?: string;
  /**
   * An existing ServiceAccount of the namespace, already bound to its role (bring-your-own): no
   * ServiceAccount is created. Excludes `awsRole` and `serviceAccountName`.
   * @default - the store creates one
   */
  readonly serviceAccount?: kplus.IServiceAccount;
}

/** A SecretStore for AWS Secrets Manager, authenticated by IRSA. */
export class AwsSecretStore extends Construct {
  /**
   * The platform's SecretStore, named by the platform spec: `kubernetes.secretStore` (name and
   * ServiceAccount), in `kubernetes.namespace`, reading `aws.region` with the role AgentCloud
   * creates for it. Throws when the spec is invalid, naming each field.
   */
  public static fromPlatform(scope: Construct, id: string, spec: PlatformSpec): AwsSecretStore {
    return AwsSecretStore._fromNames(scope, id, platformNamesFor('AwsSecretStore.fromPlatform', spec));
  }

  /** @internal From names already derived (AgentPlatform's). */
  public static _fromNames(scope: Construct, id: string, names: PlatformNames): AwsSecretStore {
    const store = names.secretStore;
    return new AwsSecretStore(scope, id, {
      name: store.name,
      namespace: store.namespace,
      region: store.region,
      serviceAccountName: store.serviceAccount,
      awsRole: AwsRole.fromArn(store.roleArn),
    });
  }

  /** The SecretStore's name. */
  public readonly name: string;
  /** Its namespace, when known at synth. */
  public readonly namespace?: string;
  /** The region it reads. */
  public readonly region: string;
  /** The ServiceAccount it authenticates as. */
  public readonly serviceAccountName: string;
  /** The ServiceAccount, when the store created it. */
  public readonly serviceAccount?: kplus.ServiceAccount;
  /** The role of the created ServiceAccount. */
  public readonly awsRole?: AwsRole;
  /** The SecretStore (the construct's default child, id 'Resource'). */
  public readonly resource: SecretStore;
  /** What the constructs' `secretStore` prop takes. */
  public readonly ref: SecretStoreRef;

  constructor(scope: Construct, id: string, props: AwsSecretStoreProps) {
    super(scope, id);
    this.name = resolveName('AwsSecretStore', 'aws-secrets-manager', props.name);
    const owner = `AwsSecretStore '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    if (typeof props.region !== 'string' || !AWS_REGION.test(props.region)) {
      throw new Error(`${owner}: 'region' ('${props.region}') must be an AWS region such as 'eu-central-1': the region the cloud side keeps the secrets in (the platform spec's 'aws.region').`);
    }
    this.region = props.region;
    const labels = commonLabels(this.name, COMPONENT);
    if (props.serviceAccount) {
      if (props.awsRole || props.serviceAccountName) {
        throw new Error(
          `${owner}: 'serviceAccount' is an existing ServiceAccount, already bound to its role, but '${props.awsRole ? 'awsRole' : 'serviceAccountName'}' is set too. ` +
            `Remove it, or remove 'serviceAccount' to have the store create its own.`,
        );
      }
      this.serviceAccountName = props.serviceAccount.name;
    } else {
      if (!props.awsRole) {
        throw new Error(
          `${owner}: 'awsRole' is required: the IAM role its ServiceAccount assumes to read Secrets Manager ` +
            `(AgentPlatform builds the store from the platform spec; or give an existing 'serviceAccount').`,
        );
      }
      this.serviceAccountName = props.serviceAccountName ?? this.name;
      if (!DNS_LABEL.test(this.serviceAccountName)) {
        throw new Error(`${owner}: 'serviceAccountName' ('${this.serviceAccountName}') must be a DNS label: lowercase letters, digits and '-', starting with a letter, at most 63 characters.`);
      }
      // External Secrets requests the token itself (TokenRequest API): nothing mounts it.
      this.serviceAccount = new kplus.ServiceAccount(this, 'ServiceAccount', {
        metadata: { name: this.serviceAccountName, namespace: this.namespace, labels },
        automountToken: false,
      });
      bindAwsRole(owner, 'awsRole', this.serviceAccount, props.awsRole);
      this.awsRole = props.awsRole;
    }
    this.resource = new SecretStore(this, 'Resource', {
      metadata: { name: this.name, namespace: this.namespace, labels },
      spec: {
        provider: {
          aws: {
            service: SecretStoreSpecProviderAwsService.SECRETS_MANAGER,
            region: this.region,
            auth: { jwt: { serviceAccountRef: { name: this.serviceAccountName } } },
          },
        },
      },
    });
    this.ref = SecretStoreRef.secretStore(this.name);
  }
}
