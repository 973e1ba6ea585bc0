/** Which non-internet ranges a NetworkPolicy ipBlock (a CIDR minus its excepts) still reaches. */
import { isIP } from 'node:net';
import { NON_INTERNET_RANGES } from '../network';

/**
 * IPv6 counterparts of NON_INTERNET_RANGES: unique local addresses (private networks; AWS serves
 * its metadata endpoint at fd00:ec2::254) and link-local.
 */
export const NON_INTERNET_RANGES_V6: readonly string[] = ['fc00::/7', 'fe80::/10'];

/** The cloud metadata endpoint: it hands out the node's credentials. */
export const METADATA_ADDRESS = '169.254.169.254';

interface AddressRange {
  readonly bits: 32 | 128;
  readonly first: bigint;
  readonly last: bigint;
}

function ipv4ToBigInt(address: string): bigint {
  return address.split('.').reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6ToBigInt(address: string): bigint {
  let text = address;
  // An embedded IPv4 tail (::ffff:10.0.0.1) is the last two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipv4ToBigInt(v4[1]);
    text = `${text.slice(0, -v4[1].length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  return groups.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** `10.0.0.0/8` or `fd00::/8` as a range of addresses; undefined when it is not a CIDR. */
export function parseCidr(cidr: string): AddressRange | undefined {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const family = match ? isIP(match[1]) : 0;
  if (!match || family === 0) return undefined;
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(match[2]);
  if (prefix > bits) return undefined;
  const address = family === 4 ? ipv4ToBigInt(match[1]) : ipv6ToBigInt(match[1]);
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  const first = address & ~hostMask;
  return { bits, first, last: first | hostMask };
}

/** Whether some address of `range` is in none of `holes`. */
function leftOver(range: AddressRange, holes: readonly AddressRange[]): boolean {
  let next = range.first;
  for (const hole of [...holes].filter((h) => h.bits === range.bits).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))) {
    if (hole.last < next) continue;
    if (hole.first > next) return true;
    next = hole.last + 1n;
    if (next > range.last) return false;
  }
  return next <= range.last;
}

/**
 * The non-internet ranges (NON_INTERNET_RANGES and their IPv6 counterparts) that `cidr` minus
 * `except` reaches, at least in part: `10.0.0.0/8`, `10.1.2.3/32 (in 10.0.0.0/8)`, with the
 * metadata endpoint named when it is reached. Undefined when `cidr` or an except is not a CIDR.
 */
export function nonInternetReach(cidr: string, except: readonly string[]): string[] | undefined {
  const block = parseCidr(cidr);
  const holes = except.map(parseCidr);
  if (!block || holes.some((h) => h === undefined)) return undefined;
  const excepted = holes as AddressRange[];
  const metadata = parseCidr(`${METADATA_ADDRESS}/32`)!;
  const reached: string[] = [];
  for (const range of [...NON_INTERNET_RANGES, ...NON_INTERNET_RANGES_V6]) {
    const forbidden = parseCidr(range)!;
    if (forbidden.bits !== block.bits || block.last < forbidden.first || forbidden.last < block.first) continue;
    // Two CIDRs that overlap are nested: the overlap is the smaller one.
    const inside = within(block, forbidden);
    if (!leftOver(inside ? block : forbidden, excepted)) continue;
    const narrower = inside && !within(forbidden, block);
    const notes = narrower ? [`in ${range}`] : [];
    if (within(metadata, forbidden) && within(metadata, block) && leftOver(metadata, excepted)) {
      notes.push(within(block, metadata) ? 'the cloud metadata endpoint' : `the cloud metadata endpoint ${METADATA_ADDRESS} included`);
    }
    const name = narrower ? cidr : range;
    reached.push(notes.length > 0 ? `${name} (${notes.join('; ')})` : name);
  }
  return reached;
}

function within(inner: AddressRange, outer: AddressRange): boolean {
  return inner.bits === outer.bits && inner.first >= outer.first && inner.last <= outer.last;
}

/** Private network ranges a declared destination may lie in: not link-local, where the metadata endpoint is. */
function declarableRanges(): string[] {
  // A function, not a constant: network.ts imports this module while NON_INTERNET_RANGES is being defined.
  return NON_INTERNET_RANGES.filter((r) => r !== '169.254.0.0/16').concat(['fc00::/7']);
}

/**
 * Whether `cidr` lies entirely inside one private network range (10.0.0.0/8, 100.64.0.0/10,
 * 172.16.0.0/12, 192.168.0.0/16, fc00::/7): the only blocks a private-egress declaration may name,
 * so one can never open the internet or link-local addresses as "private".
 */
export function withinOnePrivateRange(cidr: string): boolean {
  const block = parseCidr(cidr);
  return !!block && declarableRanges().some((range) => within(block, parseCidr(range)!));
}

/** Whether `cidr` contains the single address `address` (IPv4 or IPv6). */
export function coversAddress(cidr: string, address: string): boolean {
  const block = parseCidr(cidr);
  const one = parseCidr(`${address}/${address.includes(':') ? 128 : 32}`);
  return !!block && !!one && within(one, block);
}
