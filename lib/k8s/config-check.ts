/**
 * The runtime config a construct synthesizes, checked by the validator the runtime runs at
 * start: a config it would refuse is a construct error naming the prop it came from.
 */
import { validateSidecarConfig, type ConfigIssue, type SidecarConfig, type SidecarConfigInput } from '../spec';

export interface ConfigContext {
  /** "AgentService 'support-chat'". */
  readonly owner: string;
  readonly providerNames: readonly string[];
  readonly toolNames: readonly string[];
  readonly agentNames: readonly string[];
  /** Paths set through addConfigOverride. */
  readonly overrides: readonly string[];
  /** Set when the agent's providers come from a gateway. */
  readonly gatewayName?: string;
}

/** The prop a config path comes from: `tools[1].endpoint` -> `'tools' (issue_refund): endpoint`. */
export function propOf(path: string, ctx: ConfigContext): string {
  const override = ctx.overrides.find((o) => path === o || path.startsWith(`${o}.`) || path.startsWith(`${o}[`));
  if (override) return `addConfigOverride('${override}')`;
  const indexed = /^(providers|tools|budgets|rateLimits|gateway\.agents)\[(\d+)\]\.?(.*)$/.exec(path);
  if (indexed) {
    const [, list, index, rest] = indexed;
    const i = Number(index);
    const field = rest ? `: ${rest}` : '';
    switch (list) {
      case 'providers':
        return ctx.gatewayName ? `'gateway' (${ctx.gatewayName})${field}` : `'providers' (${ctx.providerNames[i] ?? i})${field}`;
      case 'tools':
        return `'tools' (${ctx.toolNames[i] ?? i})${field}`;
      case 'gateway.agents':
        return `connect(${ctx.agentNames[i] ?? i})${field}`;
      default:
        return `'${list}[${i}]'${field}`;
    }
  }
  const fixed: Record<string, string> = {
    'agent.name': "'name'",
    'agent.team': "'team'",
    'shutdown.drainMs': "'drainTimeout'",
    'approvals.token': "'approvals'",
    providers: ctx.gatewayName ? "'gateway'" : "'providers'",
  };
  if (fixed[path]) return fixed[path];
  const [head, ...rest] = path.split('.');
  return rest.length ? `'${head}': ${rest.join('.')}` : `'${head}'`;
}

/** Validates `input`; throws an error listing every problem by prop. `ignore` drops issues fixed later (e.g. at synth). */
export function checkConfig(input: SidecarConfigInput, ctx: ConfigContext, ignore?: (issue: ConfigIssue) => boolean): SidecarConfig | undefined {
  const { config, issues } = validateSidecarConfig(input);
  const kept = ignore ? issues.filter((i) => !ignore(i)) : issues;
  if (kept.length) {
    const lines = kept.map((i) => `  ${propOf(i.path, ctx)} ${i.message} (config path ${i.path})`);
    throw new Error(`${ctx.owner}: the runtime would refuse this config:\n${lines.join('\n')}`);
  }
  return config;
}

/** Sets `value` at a dotted path (`timeouts.firstByteMs`), creating objects on the way. */
export function setPath(target: Record<string, any>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part];
  }
  node[parts[parts.length - 1]] = value;
}

/** Drops undefined fields so the JSON (and its checksum) is the same however a value was left out. */
export function compact<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
