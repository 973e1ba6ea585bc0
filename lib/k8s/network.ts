/**
 * NetworkPolicy rules of the emitted pods: default deny both ways, then only what the
 * construct declares (DNS, providers or the gateway, Redis, tools, callers, scrapers).
 */
import { isIP } from 'node:net';
import * as kplus from 'cdk8s-plus-28';
import { withinOnePrivateRange } from './rules/cidr';

/**
 * Never "the internet": private ranges (the cluster, the VPC), carrier-grade NAT (pod ranges on
 * some clouds) and link-local, which holds the cloud metadata endpoint 169.254.169.254 (node
 * credentials).
 */
export const NON_INTERNET_RANGES: readonly string[] = ['10.0.0.0/8', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16'];

export function checkPort(what: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what} (${port}) must be a port number from 1 to 65535.`);
}

/** Where a URL points, as far as NetworkPolicy cares. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly kind: EndpointKind;
}

export enum EndpointKind {
  /** 127.0.0.1, ::1, localhost: the pod itself, never filtered. */
  LOOPBACK = 'loopback',
  /** A literal address. */
  IP = 'ip',
  /** A Service name: single label, `*.svc`, `*.svc.<cluster domain>`. */
  CLUSTER = 'cluster',
  /** Anything else: a public DNS name. */
  INTERNET = 'internet',
}

export function parseEndpoint(what: string, url: string): Endpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${what} ('${url}') must be an absolute http(s) URL.`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`${what} ('${url}') must be an http(s) URL.`);
  const host = parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
  let kind: EndpointKind;
  if (host === 'localhost' || host === '::1' || host.startsWith('127.')) kind = EndpointKind.LOOPBACK;
  else if (isIP(host)) kind = EndpointKind.IP;
  else if (!host.includes('.') || /\.svc(\.[a-z0-9.-]+)?$/.test(host)) kind = EndpointKind.CLUSTER;
  else kind = EndpointKind.INTERNET;
  return { host, port, kind };
}

/**
 * The rules of one default-deny NetworkPolicy, each added once however many tools or
 * providers need it (so adding a tool on the same port adds nothing to the diff).
 */
/**
 * The annotation of a NetworkPolicy declaring the private addresses its agent pods may reach, one
 * per line: `<CIDR> <TCP port>[,<port>...] <reason>`, e.g.
 * `10.0.0.0/16 6379 the platform's ElastiCache Redis (budgets, rate limits, approvals)`.
 * The rule pack's AGT-K8S-24 accepts an egress rule to that exact CIDR on those TCP ports only;
 * anything else private it still reports, and the cloud metadata endpoint cannot be declared.
 */
export const PRIVATE_EGRESS_ANNOTATION = 'cdk-agents.io/private-egress';

export class PolicyRules {
  private readonly seen = new Set<string>();
  /** Private address blocks declared in PRIVATE_EGRESS_ANNOTATION: their ports and reasons. */
  private readonly declared = new Map<string, { ports: number[]; reasons: string[] }>();
  private internet?: kplus.NetworkPolicyIpBlock;
  private anyAddress?: kplus.NetworkPolicyIpBlock;
  private anyPod?: kplus.Pods;

  constructor(public readonly policy: kplus.NetworkPolicy) {}

  /** Name resolution through kube-dns / CoreDNS (label k8s-app=kube-dns in kube-system). */
  allowDns(): void {
    const dns = kplus.Pods.select(this.policy, 'KubeDns', {
      labels: { 'k8s-app': 'kube-dns' },
      namespaces: kplus.Namespaces.select(this.policy, 'KubeSystem', { names: ['kube-system'] }),
    });
    this.policy.addEgressRule(dns, [kplus.NetworkPolicyPort.udp(53), kplus.NetworkPolicyPort.tcp(53)]);
  }

  /** TCP `port` to public addresses only. */
  allowInternet(port: number): void {
    this.internet ??= kplus.NetworkPolicyIpBlock.ipv4(this.policy, 'Internet', '0.0.0.0/0', [...NON_INTERNET_RANGES]);
    this.allowEgress(this.internet, port);
  }

  /** TCP `port` to any pod in any namespace (an in-cluster Service whose pods were not declared). */
  allowAnyPod(port: number): void {
    this.anyPod ??= kplus.Pods.all(this.policy, 'AnyPod', { namespaces: kplus.Namespaces.all(this.policy, 'AnyNamespace') });
    this.allowEgress(this.anyPod, port);
  }

  /** TCP `port` to any IPv4 address, private ones included (a managed service in the VPC). */
  allowAnyAddress(port: number): void {
    this.anyAddress ??= kplus.NetworkPolicyIpBlock.anyIpv4(this.policy, 'AnyAddress');
    this.allowEgress(this.anyAddress, port);
  }

  /**
   * TCP `port` to `peer`. With `privateReason`, an address block inside one private range is
   * declared in PRIVATE_EGRESS_ANNOTATION with that reason: for the Redis a store or queue names,
   * not for tools or providers, whose private addresses the rule pack keeps reporting.
   */
  allowEgress(peer: kplus.INetworkPolicyPeer, port: number, privateReason?: string): void {
    if (this.once(`egress ${peer.node.path} ${port}`)) this.policy.addEgressRule(peer, [kplus.NetworkPolicyPort.tcp(port)]);
    // Only a block inside one private range: a wider peer (10.0.0.0/7, 0.0.0.0/0) stays a finding to justify.
    if (privateReason && peer instanceof kplus.NetworkPolicyIpBlock && withinOnePrivateRange(peer.cidr)) {
      this.declarePrivate(peer.cidr, port, privateReason);
    }
  }


  private declarePrivate(cidr: string, port: number, reason: string): void {
    const entry = this.declared.get(cidr) ?? { ports: [], reasons: [] };
    if (!entry.ports.includes(port)) entry.ports.push(port);
    if (!entry.reasons.includes(reason)) entry.reasons.push(reason);
    this.declared.set(cidr, entry);
    const lines = [...this.declared].map(([c, e]) => `${c} ${e.ports.join(',')} ${e.reasons.join('; ')}`);
    this.policy.metadata.addAnnotation(PRIVATE_EGRESS_ANNOTATION, lines.join('\n'));
  }

  allowIngress(peer: kplus.INetworkPolicyPeer, port: number): void {
    if (this.once(`ingress ${peer.node.path} ${port}`)) this.policy.addIngressRule(peer, [kplus.NetworkPolicyPort.tcp(port)]);
  }

  /** Egress to what a URL points at: the declared peer, else derived from the host. */
  allowEndpoint(what: string, url: string, peer?: kplus.INetworkPolicyPeer, targetPort?: number): void {
    const endpoint = parseEndpoint(what, url);
    const port = targetPort ?? endpoint.port;
    if (peer) return this.allowEgress(peer, port);
    switch (endpoint.kind) {
      case EndpointKind.LOOPBACK:
        return;
      case EndpointKind.IP: {
        const id = `Address-${endpoint.host.replace(/[^0-9a-f]/g, '-')}`;
        const existing = this.policy.node.tryFindChild(id) as kplus.NetworkPolicyIpBlock | undefined;
        const block =
          existing ??
          (isIP(endpoint.host) === 6
            ? kplus.NetworkPolicyIpBlock.ipv6(this.policy, id, `${endpoint.host}/128`)
            : kplus.NetworkPolicyIpBlock.ipv4(this.policy, id, `${endpoint.host}/32`));
        return this.allowEgress(block, port);
      }
      case EndpointKind.CLUSTER:
        return this.allowAnyPod(port);
      case EndpointKind.INTERNET:
        return this.allowInternet(port);
    }
  }

  private once(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}
