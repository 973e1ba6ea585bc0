/**
 * Entry point of dist/sidecar.js.
 */
import { ConfigValidationError } from '../spec/config';
import { parseArgs, USAGE, UsageError } from './cli';
import { log } from './log';
import { Runtime, RUNTIME_VERSION } from './runtime';

const EXIT_USAGE = 2;
const EXIT_CONFIG = 78; // EX_CONFIG

async function main(argv: string[]): Promise<number | undefined> {
  let command;
  try {
    command = parseArgs(argv);
  } catch (err) {
    return fail(err);
  }
  // Nothing is served in these two cases, so stdout (otherwise audit records only) is free.
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${RUNTIME_VERSION}\n`);
    return 0;
  }
  let runtime: Runtime;
  try {
    runtime = Runtime.create(command.config);
  } catch (err) {
    return fail(err, command.source);
  }
  if (command.checkOnly) {
    process.stderr.write(`config ok (${command.source})\n`);
    return 0;
  }
  const { proxy, admin } = await runtime.start();
  log.info('listening', {
    version: RUNTIME_VERSION,
    mode: command.config.mode,
    agent: runtime.agent,
    source: command.source,
    proxy: `${proxy.address}:${proxy.port}`,
    admin: admin ? `${admin.address}:${admin.port}` : undefined,
    providers: command.config.providers.map((p) => `${p.name} (${p.type})`),
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('draining', { signal, inFlight: runtime.inFlight.size, drainMs: command.config.shutdown.drainMs });
    runtime.drain().then(
      () => {
        log.info('stopped');
        process.exitCode = 0;
        // Let stdout/stderr flush, then leave even if a handle lingers.
        setImmediate(() => process.exit(0));
      },
      (err: Error) => {
        log.error('drain failed', { error: err.message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return undefined;
}

function fail(err: unknown, source?: string): number {
  if (err instanceof ConfigValidationError) {
    source = err.source ?? source;
    process.stderr.write(`cdk-agents sidecar: invalid config${source ? ` (${source})` : ''}:\n${err.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}\n`);
    return EXIT_CONFIG;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`cdk-agents sidecar: ${err.message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  throw err;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: Error) => {
    log.error('fatal', { error: err.stack ?? err.message });
    process.exit(1);
  },
);
