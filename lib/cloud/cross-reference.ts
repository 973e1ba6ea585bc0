/**
 * Every reference from the Kubernetes side (synthesized YAML) into the cloud side (synthesized
 * Terraform JSON), checked on the output alone: no construct, no spec, nothing either side
 * derived. A name that differs on one side is a problem naming both ends.
 */
import { IAM_ROLE_ARN, IRSA_AUDIENCE, IRSA_ROLE_ANNOTATION } from '../spec/platform';

type Json = Record<string, any>;

/** The Terraform JSON of a stack (cdktf's Testing.synth, parsed). */
export interface TerraformJson {
  readonly provider?: Record<string, Json[]>;
  readonly resource: Record<string, Record<string, Json>>;
  readonly output?: Record<string, { value: unknown }>;
}

/** ServiceAccounts the cluster runs outside the synthesized YAML whose roles the YAML names (KEDA's operator). */
export interface ExternalServiceAccount {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface CrossReferenceOptions {
  /** Who assumes the roles of KEDA TriggerAuthentications (pod identity aws: the KEDA operator). */
  readonly kedaOperator: ExternalServiceAccount;
}

const QUEUE_URL = /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/(\d{12})\/([A-Za-z0-9_-]+(?:\.fifo)?)$/;
/** `${aws_secretsmanager_secret.<id>.arn}` and the like. */
const REFERENCE = /^\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)\}$/;

/** Problems of the references between `objects` (Kubernetes) and `tf` (Terraform); empty when every one matches. */
export function crossReferenceProblems(objects: readonly unknown[], tf: TerraformJson, options: CrossReferenceOptions): string[] {
  return new CrossReferences(objects as Json[], tf, options).check();
}

class CrossReferences {
  private readonly problems: string[] = [];
  private readonly region?: string;
  private readonly accounts: string[];

  constructor(
    private readonly objects: Json[],
    private readonly tf: TerraformJson,
    private readonly options: CrossReferenceOptions,
  ) {
    const aws = (tf.provider?.aws ?? []).filter((p) => p.alias === undefined);
    this.region = aws[0]?.region;
    this.accounts = aws[0]?.allowed_account_ids ?? [];
  }

  check(): string[] {
    for (const account of this.find('ServiceAccount')) {
      const arn = account.metadata.annotations?.[IRSA_ROLE_ANNOTATION];
      if (arn !== undefined) this.checkRole(`ServiceAccount ${this.id(account)}`, arn, this.namespaceOf(account) ?? 'default', account.metadata.name);
    }
    for (const store of this.find('SecretStore')) this.checkSecretStore(store);
    for (const secret of this.find('ExternalSecret')) this.checkExternalSecret(secret);
    for (const scaled of [...this.find('ScaledObject'), ...this.find('ScaledJob')]) this.checkScaler(scaled);
    this.checkMountedKeys();
    return this.problems;
  }

  /**
   * Every key a pod takes from a Secret that an ExternalSecret writes (a volume's items, a
   * projected source, an env secretKeyRef) is one the ExternalSecret produces: a `data` entry's
   * secretKey, or for `dataFrom` extract a property the Terraform writes into that secret. A key
   * missing there leaves the pod in ContainerCreating, or the runtime without its signing key.
   */
  private checkMountedKeys(): void {
    const produced = new Map<string, Set<string>>();
    for (const secret of this.find('ExternalSecret')) {
      const target = `${this.namespaceOf(secret) ?? 'default'}/${secret.spec.target?.name ?? secret.metadata.name}`;
      const keys = produced.get(target) ?? new Set<string>();
      const template = secret.spec.target?.template;
      // A template's data keys are the Secret's; the fetched ones too only with mergePolicy Merge.
      for (const key of Object.keys(template?.data ?? {})) keys.add(key);
      if (!template?.data || template.mergePolicy === 'Merge') {
        for (const d of (secret.spec.data ?? []) as Json[]) keys.add(d.secretKey);
        for (const d of (secret.spec.dataFrom ?? []) as Json[]) {
          if (d.extract && this.resourceNamed('aws_secretsmanager_secret', d.extract.key)) for (const p of this.propertiesOf(d.extract.key)) keys.add(p);
        }
      }
      produced.set(target, keys);
    }
    for (const object of this.objects) {
      const namespace = this.namespaceOf(object) ?? 'default';
      const uses: Array<{ secret: string; key: string }> = [];
      const walk = (value: unknown): void => {
        if (Array.isArray(value)) return value.forEach(walk);
        if (!value || typeof value !== 'object') return;
        const v = value as Json;
        const volume = v.secret;
        if (volume && typeof volume === 'object' && Array.isArray(volume.items) && !volume.optional) {
          for (const item of volume.items as Json[]) uses.push({ secret: volume.secretName ?? volume.name, key: item.key });
        }
        if (v.secretKeyRef && typeof v.secretKeyRef === 'object' && !v.secretKeyRef.optional) uses.push({ secret: v.secretKeyRef.name, key: v.secretKeyRef.key });
        Object.values(v).forEach(walk);
      };
      if (object.kind !== 'ExternalSecret' && object.kind !== 'Secret') walk(object.spec);
      for (const { secret, key } of uses) {
        const keys = produced.get(`${namespace}/${secret}`);
        if (keys && !keys.has(key)) {
          this.problem(`${object.kind} ${this.id(object)}: takes the key ${key} of the Secret ${secret}, which its ExternalSecret does not produce (it produces ${[...keys].join(', ') || 'nothing'})`);
        }
      }
    }
  }

  /** An IRSA role: in Terraform, in the account, trusting exactly `namespace/serviceAccount` for sts.amazonaws.com. */
  private checkRole(what: string, arn: string, namespace: string, serviceAccount: string): Json | undefined {
    const match = IAM_ROLE_ARN.exec(arn);
    if (!match) return this.problem(`${what}: '${arn}' is not an IAM role ARN`);
    if (this.accounts.length > 0 && !this.accounts.includes(match[2])) this.problem(`${what}: the role ${arn} is in account ${match[2]}, but the AWS provider allows ${this.accounts.join(', ') || 'any account'}`);
    const role = this.resourceNamed('aws_iam_role', match[3]);
    if (!role) return this.problem(`${what}: the role ${arn} names no aws_iam_role in the Terraform (roles: ${this.names('aws_iam_role').join(', ')})`);
    const subject = `system:serviceaccount:${namespace}:${serviceAccount}`;
    const trust = JSON.parse(role.assume_role_policy);
    const web = (trust.Statement as Json[]).filter((s) => s.Effect === 'Allow' && [s.Action].flat().includes('sts:AssumeRoleWithWebIdentity'));
    // Every web-identity statement exactly this ServiceAccount: another one trusting a wildcard subject would admit others.
    const trusts = web.length > 0 && web.every((s) => {
      const issuer = String(s.Principal?.Federated ?? '').replace(/^arn:[^:]+:iam::\d{12}:oidc-provider\//, '');
      const equals = s.Condition?.StringEquals ?? {};
      // Exactly these two conditions' values: a StringLike or a list would admit other ServiceAccounts.
      return issuer !== '' && equals[`${issuer}:sub`] === subject && equals[`${issuer}:aud`] === IRSA_AUDIENCE && !s.Condition?.StringLike;
    });
    if (!trusts) {
      const subjects = web.map((s) => Object.entries(s.Condition?.StringEquals ?? {}).find(([k]) => k.endsWith(':sub'))?.[1]);
      this.problem(`${what}: the role ${match[3]} does not trust ${subject} with audience ${IRSA_AUDIENCE} (it trusts ${JSON.stringify(subjects)})`);
    }
    return role;
  }

  private checkSecretStore(store: Json): void {
    const what = `SecretStore ${this.id(store)}`;
    const aws = store.spec?.provider?.aws;
    if (!aws) return;
    if (aws.region !== this.region) this.problem(`${what}: reads region ${aws.region}, but the Terraform's AWS provider puts the secrets in ${this.region}`);
    const accountName = aws.auth?.jwt?.serviceAccountRef?.name;
    const account = this.find('ServiceAccount').find((a) => a.metadata.name === accountName && this.namespaceOf(a) === this.namespaceOf(store));
    const arn = account?.metadata.annotations?.[IRSA_ROLE_ANNOTATION];
    if (!arn) return this.problem(`${what}: authenticates as ServiceAccount ${accountName}, which is not in the YAML with an ${IRSA_ROLE_ANNOTATION} annotation`);
    const role = this.resourceNamed('aws_iam_role', IAM_ROLE_ARN.exec(arn)?.[3] ?? '');
    if (!role) return; // reported with the ServiceAccount
    const readable = new Set(
      this.allowed(role, 'secretsmanager:GetSecretValue').flatMap((resource) => {
        const secret = this.referenced(resource, 'aws_secretsmanager_secret');
        return secret ? [secret.name as string] : [];
      }),
    );
    const read = new Set(this.secretReads(store).map((r) => r.key));
    for (const key of read) if (!readable.has(key)) this.problem(`${what}: its role ${role.name} cannot read the secret ${key} that ExternalSecrets read through it`);
    for (const key of readable) if (!read.has(key)) this.problem(`${what}: its role ${role.name} reads the secret ${key}, which no ExternalSecret reads through it (least privilege)`);
  }

  private checkExternalSecret(secret: Json): void {
    const what = `ExternalSecret ${this.id(secret)}`;
    const ref = secret.spec.secretStoreRef ?? {};
    const kind = ref.kind ?? 'SecretStore';
    const store = this.find(kind).find((s) => s.metadata.name === ref.name && (kind === 'ClusterSecretStore' || this.namespaceOf(s) === this.namespaceOf(secret)));
    if (!store) this.problem(`${what}: reads through ${kind} ${ref.name}, which is not in the YAML`);
    for (const { key, property } of this.reads(secret)) {
      const declared = this.resourceNamed('aws_secretsmanager_secret', key);
      if (!declared) {
        this.problem(`${what}: reads the secret ${key}, which names no aws_secretsmanager_secret in the Terraform (secrets: ${this.names('aws_secretsmanager_secret').join(', ')})`);
        continue;
      }
      const properties = this.propertiesOf(key);
      if (property !== undefined && !properties.includes(property)) {
        this.problem(`${what}: reads the property ${property} of ${key}, which holds ${properties.length ? properties.join(', ') : 'no known property'}`);
      }
    }
  }

  /** A KEDA SQS trigger: the queue in Terraform, in the region and account; KEDA's role reads it, the worker's role consumes it. */
  private checkScaler(scaled: Json): void {
    const what = `${scaled.kind} ${this.id(scaled)}`;
    for (const trigger of (scaled.spec.triggers ?? []) as Json[]) {
      if (trigger.type !== 'aws-sqs-queue') continue;
      const url = trigger.metadata.queueURL;
      const match = QUEUE_URL.exec(url);
      if (!match) {
        this.problem(`${what}: queueURL '${url}' is not an SQS queue URL`);
        continue;
      }
      const [, urlRegion, account, name] = match;
      if (urlRegion !== this.region || trigger.metadata.awsRegion !== this.region) {
        this.problem(`${what}: the queue ${url} (awsRegion ${trigger.metadata.awsRegion}) is not in the Terraform's region ${this.region}`);
      }
      if (this.accounts.length > 0 && !this.accounts.includes(account)) this.problem(`${what}: the queue ${url} is in account ${account}, but the AWS provider allows ${this.accounts.join(', ')}`);
      const queue = this.resourceEntry('aws_sqs_queue', name);
      if (!queue) {
        this.problem(`${what}: the queue ${url} names no aws_sqs_queue in the Terraform (queues: ${this.names('aws_sqs_queue').join(', ')})`);
        continue;
      }
      const queueArn = `\${aws_sqs_queue.${queue[0]}.arn}`;
      const auth = this.find('TriggerAuthentication').find((a) => a.metadata.name === trigger.authenticationRef?.name && this.namespaceOf(a) === this.namespaceOf(scaled));
      const roleArn = auth?.spec?.podIdentity?.provider === 'aws' ? auth.spec.podIdentity.roleArn : undefined;
      if (!roleArn) {
        this.problem(`${what}: its trigger has no TriggerAuthentication with pod identity aws and a roleArn`);
      } else {
        const keda = this.options.kedaOperator;
        const role = this.checkRole(`TriggerAuthentication ${this.id(auth!)}`, roleArn, keda.namespace, keda.serviceAccount);
        if (role && !this.allowed(role, 'sqs:GetQueueAttributes').includes(queueArn)) this.problem(`${what}: KEDA's role ${role.name} may not read the length of ${name}`);
      }
      const pod = this.scaledPod(scaled);
      const accountName = pod?.serviceAccountName;
      const workerArn = this.find('ServiceAccount').find((a) => a.metadata.name === accountName && this.namespaceOf(a) === this.namespaceOf(scaled))?.metadata.annotations?.[IRSA_ROLE_ANNOTATION];
      const workerRole = workerArn && this.resourceNamed('aws_iam_role', IAM_ROLE_ARN.exec(workerArn)?.[3] ?? '');
      if (!workerRole) this.problem(`${what}: the worker's ServiceAccount ${accountName} has no role of the Terraform`);
      else if (!this.allowed(workerRole, 'sqs:ReceiveMessage').includes(queueArn)) this.problem(`${what}: the worker's role ${workerRole.name} may not receive from ${name}`);
    }
  }

  private scaledPod(scaled: Json): Json | undefined {
    if (scaled.kind === 'ScaledJob') return scaled.spec.jobTargetRef?.template?.spec;
    const target = scaled.spec.scaleTargetRef;
    return this.find(target.kind ?? 'Deployment').find((d) => d.metadata.name === target.name && this.namespaceOf(d) === this.namespaceOf(scaled))?.spec.template.spec;
  }

  /** The resources the role's inline policies allow `action` on. */
  private allowed(role: Json, action: string): string[] {
    const entry = Object.entries(this.tf.resource.aws_iam_role ?? {}).find(([, r]) => r === role)!;
    const policies = Object.values(this.tf.resource.aws_iam_role_policy ?? {}).filter((p) => p.role === `\${aws_iam_role.${entry[0]}.name}`);
    return policies.flatMap((p) =>
      (JSON.parse(p.policy).Statement as Json[]).filter((s) => s.Effect === 'Allow' && [s.Action].flat().includes(action)).flatMap((s) => [s.Resource].flat() as string[]),
    );
  }

  /** The resource of `type` a `${type.id.attr}` reference points at. */
  private referenced(reference: string, type: string): Json | undefined {
    const match = REFERENCE.exec(reference);
    return match && match[1] === type ? this.tf.resource[type]?.[match[2]] : undefined;
  }

  /** The JSON properties of a secret: from the version Terraform writes, else from the outputs describing it. */
  private propertiesOf(name: string): string[] {
    const [id] = this.resourceEntry('aws_secretsmanager_secret', name)!;
    const version = Object.values(this.tf.resource.aws_secretsmanager_secret_version ?? {}).find((v) => v.secret_id === `\${aws_secretsmanager_secret.${id}.id}`);
    if (version) {
      const text = String(version.secret_string);
      const encoded = /^\$\{jsonencode\(\{(.*)\}\)\}$/s.exec(text);
      if (encoded) return [...encoded[1].matchAll(/"([^"]+)"\s*=/g)].map((m) => m[1]);
      try {
        return Object.keys(JSON.parse(text));
      } catch {
        return [];
      }
    }
    // Set out of band (provider keys): the outputs say which property holds the value.
    const found: string[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === 'object') {
        const v = value as Json;
        if (v.name === name && typeof v.property === 'string') found.push(v.property);
        Object.values(v).forEach(walk);
      }
    };
    walk(Object.values(this.tf.output ?? {}).map((o) => o.value));
    return found;
  }

  /** What ExternalSecrets read through a store. */
  private secretReads(store: Json): Array<{ key: string; property?: string }> {
    return this.find('ExternalSecret')
      .filter((s) => s.spec.secretStoreRef?.name === store.metadata.name && (s.spec.secretStoreRef?.kind ?? 'SecretStore') === store.kind && this.namespaceOf(s) === this.namespaceOf(store))
      .flatMap((s) => this.reads(s));
  }

  private reads(secret: Json): Array<{ key: string; property?: string }> {
    return [
      ...((secret.spec.data ?? []) as Json[]).map((d) => ({ key: d.remoteRef.key, property: d.remoteRef.property })),
      ...((secret.spec.dataFrom ?? []) as Json[]).filter((d) => d.extract).map((d) => ({ key: d.extract.key })),
    ];
  }

  private resourceEntry(type: string, name: string): [string, Json] | undefined {
    return Object.entries(this.tf.resource[type] ?? {}).find(([, r]) => r.name === name);
  }

  private resourceNamed(type: string, name: string): Json | undefined {
    return this.resourceEntry(type, name)?.[1];
  }

  private names(type: string): string[] {
    return Object.values(this.tf.resource[type] ?? {}).map((r) => r.name);
  }

  private find(kind: string): Json[] {
    return this.objects.filter((o) => o.kind === kind);
  }

  private namespaceOf(object: Json): string | undefined {
    return object.metadata?.namespace;
  }

  private id(object: Json): string {
    return `${this.namespaceOf(object) ?? '-'}/${object.metadata.name}`;
  }

  private problem(message: string): undefined {
    this.problems.push(message);
    return undefined;
  }
}
