/**
 * NetworkPolicy: every pod isolated both ways, and agent pods kept off private ranges and the
 * cloud metadata endpoint. A pod is isolated for a direction when some NetworkPolicy of its
 * namespace selects it with that policy type; what it may then reach is the union of their rules.
 */
import { PART_OF } from '../names';
import { NON_INTERNET_RANGES, PRIVATE_EGRESS_ANNOTATION } from '../network';
import { coversAddress, METADATA_ADDRESS, nonInternetReach, parseCidr, withinOnePrivateRange } from './cidr';
import { apiGroup, asArray, asObject, labelsOf, namespaceOf, selects, type Json, type PodTemplate } from './manifest';
import { MIN_REASON_LENGTH, podRule, RuleLevel, type K8sRule, type RuleContext, type RuleViolation } from './rule';

const DECLARATION = /^(\S+)\s+(\d{1,5}(?:,\d{1,5})*)\s+(\S.*)$/;

interface PrivateEgressDeclaration {
  readonly cidr: string;
  readonly ports: readonly number[];
}

/** The declarations of a policy's annotation, and what in it cannot be accepted. */
function declaredPrivateEgress(policy: Json): { declared: PrivateEgressDeclaration[]; problems: RuleViolation[] } {
  const value = asObject(asObject(policy.metadata).annotations)[PRIVATE_EGRESS_ANNOTATION];
  const declared: PrivateEgressDeclaration[] = [];
  const problems: RuleViolation[] = [];
  if (value === undefined) return { declared, problems };
  const path = `metadata.annotations["${PRIVATE_EGRESS_ANNOTATION}"]`;
  const lines = String(value).split('\n').map((l) => l.trim()).filter(Boolean);
  lines.forEach((line, n) => {
    const where = lines.length > 1 ? `line ${n + 1} (${JSON.stringify(line)})` : JSON.stringify(line);
    const m = DECLARATION.exec(line);
    const ports = m ? m[2].split(',').map(Number) : [];
    if (!m || !parseCidr(m[1]) || ports.some((p) => p < 1 || p > 65535)) {
      problems.push({ path, problem: `${where} is not '<CIDR> <TCP port>[,<port>...] <reason>', so it declares nothing` });
    } else if (m[3].trim().length < MIN_REASON_LENGTH) {
      problems.push({ path, problem: `${where} gives no reason of at least ${MIN_REASON_LENGTH} characters: say what the agents reach there` });
    } else if (METADATA_ADDRESSES.some((address) => coversAddress(m[1], address))) {
      problems.push({ path, problem: `${where} covers the cloud metadata endpoint (${METADATA_ADDRESSES.join(', ')}), which no declaration can open: it hands out the node's credentials` });
    } else if (!withinOnePrivateRange(m[1])) {
      problems.push({ path, problem: `${where} is not inside one private range (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), so it declares nothing: name the private block the agents must reach` });
    } else {
      declared.push({ cidr: m[1], ports });
    }
  });
  return { declared, problems };
}

/** The cloud metadata endpoint, IPv4 and (AWS) IPv6. */
const METADATA_ADDRESSES = [METADATA_ADDRESS, 'fd00:ec2::254'];

/** The TCP ports an egress rule opens; undefined when it opens every port or any other protocol. */
function tcpPorts(rule: Json): number[] | undefined {
  const ports = asArray(rule.ports);
  if (ports.length === 0) return undefined;
  const out: number[] = [];
  for (const entry of ports.map(asObject)) {
    if ((entry.protocol ?? 'TCP') !== 'TCP' || typeof entry.port !== 'number' || entry.endPort !== undefined) return undefined;
    out.push(entry.port);
  }
  return out;
}

/** `app.kubernetes.io/component` values of pods that run agents or call LLMs for them (with part-of: cdk-agents). */
export const AGENT_POD_COMPONENTS: readonly string[] = ['agent', 'llm-gateway', 'worker'];

/** policyTypes as the API server defaults them: Ingress always, Egress when there are egress rules. */
function policyTypes(policy: Json): string[] {
  const spec = asObject(policy.spec);
  const types = asArray(spec.policyTypes).map(String);
  if (types.length > 0) return types;
  return asArray(spec.egress).length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

/** The NetworkPolicies of the pod's namespace that select it for `type`. */
function isolating(context: RuleContext, namespace: string | undefined, labels: Record<string, string>, type: 'Ingress' | 'Egress'): Json[] {
  return context
    .find('networking.k8s.io', 'NetworkPolicy', namespace)
    .filter((p) => policyTypes(p).includes(type) && selects(asObject(p.spec).podSelector, labels));
}

function isAgentPod(t: PodTemplate): boolean {
  const labels = labelsOf(t.meta);
  return labels['app.kubernetes.io/part-of'] === PART_OF && AGENT_POD_COMPONENTS.includes(labels['app.kubernetes.io/component']);
}

export const NETWORK_POLICY = podRule(
  {
    id: 'AGT-K8S-23',
    name: 'NetworkPolicy isolation',
    explanation: 'A pod no NetworkPolicy selects for Ingress accepts connections from anything in the cluster; one not selected for Egress opens connections anywhere.',
    fix: "Add a NetworkPolicy in the pod's namespace whose podSelector matches its labels, with policyTypes [Ingress, Egress], and open only what the pod needs.",
  },
  RuleLevel.ERROR,
  (t, object, context) => {
    const namespace = namespaceOf(object);
    const labels = labelsOf(t.meta);
    const open = (['Ingress', 'Egress'] as const).filter((type) => isolating(context, namespace, labels, type).length === 0);
    if (open.length === 0) return [];
    const where = namespace === undefined ? 'without a namespace' : `in namespace ${namespace}`;
    return [{ path: `${t.metaPath}.labels`, problem: `no NetworkPolicy ${where} selects these pods for ${open.join(' or ')}` }];
  },
);

/** The egress rules of a policy that let agent pods reach a non-internet address. */
function privateEgress(policy: Json, who: string): RuleViolation[] {
  const { declared, problems } = declaredPrivateEgress(policy);
  const found: RuleViolation[] = [...problems];
  asArray(asObject(policy.spec).egress).forEach((r, i) => {
    const to = asArray(asObject(r).to);
    const ports = tcpPorts(asObject(r));
    if (to.length === 0) {
      found.push({ path: `spec.egress[${i}].to`, problem: `is empty, so the rule lets ${who} reach every address, private ranges and 169.254.169.254 included` });
      return;
    }
    to.forEach((peer, j) => {
      const block = asObject(asObject(peer).ipBlock);
      if (block.cidr === undefined) return;
      const path = `spec.egress[${i}].to[${j}].ipBlock`;
      const reached = nonInternetReach(String(block.cidr), asArray(block.except).map(String));
      if (reached === undefined) found.push({ path, problem: `cannot be read as a CIDR with excepts, so ${who} may reach anything` });
      else if (reached.length > 0 && !isDeclared(declared, String(block.cidr), ports)) {
        found.push({ path, problem: `lets ${who} reach ${reached.join(', ')}` });
      }
    });
  });
  return found;
}

/** Declared: the exact CIDR (excepts only narrow it), and every port of the rule declared for it (a rule open on every port never is). */
function isDeclared(declared: readonly PrivateEgressDeclaration[], cidr: string, ports: readonly number[] | undefined): boolean {
  if (ports === undefined) return false;
  return declared.some((d) => d.cidr === cidr && ports.every((p) => d.ports.includes(p)));
}

export const AGENT_EGRESS: K8sRule = {
  id: 'AGT-K8S-24',
  name: 'Agent egress',
  explanation: "An agent acts on model output a prompt can steer: egress to private ranges reaches internal services, and 169.254.169.254 hands out the node's cloud credentials.",
  fix:
    `Reach the internet as ipBlock 0.0.0.0/0 except NON_INTERNET_RANGES (${NON_INTERNET_RANGES.join(', ')}) and in-cluster services by podSelector and namespaceSelector; ` +
    `an address in the VPC the agent must reach (a managed Redis) is declared on the policy, CIDR, TCP ports and reason, in the annotation ${PRIVATE_EGRESS_ANNOTATION} ('10.0.0.0/16 6379 the ElastiCache Redis'), which the Kubernetes constructs write for a Redis given as an address block.`,
  level: RuleLevel.ERROR,
  check: (object, context) => {
    const namespace = namespaceOf(object);
    if (apiGroup(object) === 'networking.k8s.io' && object.kind === 'NetworkPolicy') {
      if (!policyTypes(object).includes('Egress')) return [];
      const agents = context
        .workloads(namespace)
        .filter(({ template }) => isAgentPod(template) && selects(asObject(object.spec).podSelector, labelsOf(template.meta)));
      return agents.length === 0 ? [] : privateEgress(object, `the agent pods of ${agents.map((a) => context.describe(a.object)).join(', ')}`);
    }
    const t = context.podTemplate(object);
    if (!t || !isAgentPod(t) || isolating(context, namespace, labelsOf(t.meta), 'Egress').length > 0) return [];
    return [{
      path: `${t.metaPath}.labels`,
      problem: 'no NetworkPolicy selects these agent pods for Egress, so they reach every address, private ranges and 169.254.169.254 included',
    }];
  },
};

export const NETWORK_RULES = [NETWORK_POLICY, AGENT_EGRESS];
