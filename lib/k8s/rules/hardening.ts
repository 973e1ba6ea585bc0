/**
 * Hardening beyond Pod Security Standards: what this project's pods already do and every pod
 * running an agent should (DESIGN.md, "Security model").
 */
import { unpinnedImage } from '../image';
import { asObject, containersOf, isWindows, nameOf, namespaceOf } from './manifest';
import { podRule, RuleLevel } from './rule';

export const READ_ONLY_ROOT = podRule(
  {
    id: 'AGT-K8S-16',
    name: 'Read-only root filesystem',
    explanation: 'A writable root filesystem lets a compromised process, or an agent a prompt talked into it, replace binaries and leave tools behind in the container.',
    fix: 'Set securityContext.readOnlyRootFilesystem: true and mount a size-limited emptyDir where the process must write (/tmp).',
  },
  RuleLevel.ERROR,
  // Windows containers cannot have one (the API refuses the field for Windows pods).
  (t) =>
    isWindows(t)
      ? []
      : containersOf(t)
          .filter(({ container }) => asObject(container.securityContext).readOnlyRootFilesystem !== true)
          .map(({ path }) => ({ path: `${path}.securityContext.readOnlyRootFilesystem`, problem: 'must be true' })),
);

export const SERVICE_ACCOUNT_TOKEN = podRule(
  {
    id: 'AGT-K8S-17',
    name: 'ServiceAccount token',
    explanation: "A mounted API token lets anything running in the pod, a prompt-injected agent included, call the Kubernetes API as the pod's ServiceAccount.",
    fix: 'Set automountServiceAccountToken: false on the pod or on its ServiceAccount; a pod that calls the API suppresses this rule with its reason, and its ServiceAccount gets a narrow Role.',
  },
  RuleLevel.ERROR,
  (t, object, context) => {
    const onPod = t.spec.automountServiceAccountToken;
    if (onPod === false) return [];
    const path = `${t.specPath}.automountServiceAccountToken`;
    if (onPod === true) return [{ path, problem: 'is true: the pod mounts a Kubernetes API token' }];
    // serviceAccount is the deprecated alias of serviceAccountName.
    const named = t.spec.serviceAccountName ?? t.spec.serviceAccount;
    const name = typeof named === 'string' ? named : 'default';
    const account = context.find('', 'ServiceAccount', namespaceOf(object)).find((sa) => nameOf(sa) === name);
    if (account?.automountServiceAccountToken === false) return [];
    const why = account
      ? `${context.describe(account)} does not set automountServiceAccountToken: false either`
      : `ServiceAccount ${name} is not among the checked objects, and a ServiceAccount mounts its token by default`;
    return [{ path, problem: `is unset and ${why}: the pod mounts a Kubernetes API token` }];
  },
);

export const PINNED_IMAGES = podRule(
  {
    id: 'AGT-K8S-18',
    name: 'Pinned images',
    explanation: 'An image without a tag, with latest or with a floating tag (main, stable, a bare major such as 20) makes two deploys of one manifest run different software, and a rollback roll forward.',
    fix: 'Pin a version tag with at least major.minor (1.4.2), a commit or dated build tag (sha-1a2b3c4, 2024-05-01), or a digest (@sha256:...).',
  },
  RuleLevel.ERROR,
  (t) =>
    containersOf(t)
      .filter(({ container }) => typeof container.image === 'string')
      .flatMap(({ path, container }) => {
        const image = container.image as string;
        const unpinned = unpinnedImage(image);
        if (!unpinned) return [];
        const fix = unpinned.fix ? `${unpinned.fix[0].toUpperCase()}${unpinned.fix.slice(1)}.` : undefined;
        return [{ path: `${path}.image`, problem: `${JSON.stringify(image)} ${unpinned.problem}`, fix }];
      }),
);

export const HARDENING_RULES = [READ_ONLY_ROOT, SERVICE_ACCOUNT_TOKEN, PINNED_IMAGES];
