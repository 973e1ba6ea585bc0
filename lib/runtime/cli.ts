/**
 * Command line: `--config FILE`, or the quick local mode
 * `--listen HOST:PORT --openai-base-url URL --anthropic-base-url URL` that needs no file.
 */
import { readFileSync } from 'node:fs';
import { ConfigValidationError, parseSidecarConfig, validateSidecarConfig, type SidecarConfig, type SidecarConfigInput } from '../spec/config';
import { CONVENTIONAL_KEY_ENV, DEFAULT_BASE_URLS } from '../spec/providers';

export const USAGE = `Usage:
  node sidecar.js --config FILE [--check]
      Run with a config file (JSON, see sidecar-config.schema.json). --check validates and exits.
  node sidecar.js [--listen HOST:PORT] [--openai-base-url URL] [--anthropic-base-url URL]
                  [--admin HOST:PORT] [--agent NAME]
      Quick local mode: no config file, state in memory, production defaults. Base URLs as the
      official SDKs take them (defaults https://api.openai.com/v1, https://api.anthropic.com).
      OPENAI_API_KEY / ANTHROPIC_API_KEY, when set, are injected; otherwise the client's own
      credentials are forwarded.
  node sidecar.js verify-audit FILE
      Checks the hash chains of an audit log (the sidecar's stdout, or audit.file). Exits 0 when
      intact, 1 at the first broken link (reported by line number), 2 on usage errors.
  node sidecar.js --version | --help
`;

export class UsageError extends Error {}

export type Command =
  | { kind: 'run'; config: SidecarConfig; source: string; checkOnly: boolean }
  | { kind: 'verify-audit'; file: string }
  | { kind: 'help' }
  | { kind: 'version' };

const QUICK_FLAGS = ['--listen', '--openai-base-url', '--anthropic-base-url', '--admin', '--agent'] as const;

export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Command {
  if (argv[0] === 'verify-audit') {
    if (argv.length === 2 && (argv[1] === '--help' || argv[1] === '-h')) return { kind: 'help' };
    if (argv.length !== 2 || !argv[1] || argv[1].startsWith('--')) throw new UsageError('verify-audit takes one argument: the audit log FILE');
    return { kind: 'verify-audit', file: argv[1] };
  }
  const flags = new Map<string, string>();
  let checkOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return { kind: 'help' };
    if (arg === '--version') return { kind: 'version' };
    if (arg === '--check') {
      checkOnly = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (name !== '--config' && !(QUICK_FLAGS as readonly string[]).includes(name)) {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value.startsWith('--')) throw new UsageError(`${name} needs a value`);
    flags.set(name, value);
  }

  const file = flags.get('--config');
  if (file !== undefined) {
    const extra = QUICK_FLAGS.filter((f) => flags.has(f));
    if (extra.length) throw new UsageError(`${extra.join(', ')} cannot be combined with --config; put them in the config file`);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new ConfigValidationError([{ path: '(root)', message: `not valid JSON: ${(err as Error).message}` }], file);
    }
    const { config, issues } = validateSidecarConfig(json);
    if (!config) throw new ConfigValidationError(issues, file);
    return { kind: 'run', config, source: file, checkOnly };
  }
  return { kind: 'run', config: parseSidecarConfig(quickConfig(flags, env)), source: 'quick local mode', checkOnly };
}

function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port < 0 || port > 65535) throw new UsageError(`${flag} must be HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

function quickConfig(flags: Map<string, string>, env: NodeJS.ProcessEnv): SidecarConfigInput {
  const listen = hostPort('--listen', flags.get('--listen') ?? '127.0.0.1:8787');
  const admin = flags.has('--admin') ? hostPort('--admin', flags.get('--admin')!) : undefined;
  const keyFor = (type: 'openai' | 'anthropic') => (env[CONVENTIONAL_KEY_ENV[type]] ? { env: CONVENTIONAL_KEY_ENV[type] } : undefined);
  return {
    version: 1,
    mode: 'sidecar',
    agent: { name: flags.get('--agent') ?? 'local' },
    listen,
    admin,
    providers: [
      { name: 'openai', type: 'openai', baseUrl: flags.get('--openai-base-url') ?? DEFAULT_BASE_URLS.openai, apiKey: keyFor('openai') },
      {
        name: 'anthropic',
        type: 'anthropic',
        baseUrl: flags.get('--anthropic-base-url') ?? DEFAULT_BASE_URLS.anthropic,
        apiKey: keyFor('anthropic'),
      },
    ],
  };
}
