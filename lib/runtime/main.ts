/**
 * Entry point of dist/sidecar.js.
 */
import { ConfigValidationError } from '../spec/config';
import { readFileSync } from 'node:fs';
import { verifyAuditChain } from './audit/verify';
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
  // Nothing is served in these cases (and verify-audit), so stdout (otherwise audit records only) is free.
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${RUNTIME_VERSION}\n`);
    return 0;
  }
  if (command.kind === 'verify-audit') return verifyAudit(command.file);
  let runtime: Runtime;
  try {
    runtime = Runtime.create(command.config);
  } catch (err) {
    return fail(err, command.source);
  }
  if (command.checkOnly) {
    // Nothing is served: a Redis connection left open would keep the process from exiting.
    runtime.close();
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

/** `verify-audit FILE`: the verdict on stdout (nothing is served, so stdout is free), problems on stderr. */
function verifyAudit(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`cdk-agents sidecar: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return EXIT_USAGE;
  }
  const result = verifyAuditChain(text);
  if (result.ok) {
    process.stdout.write(`${file}: intact, ${result.records} records in ${result.chains} chain${result.chains === 1 ? '' : 's'}\n`);
    return 0;
  }
  process.stderr.write(`${file}:${result.brokenAt!.line}: chain broken: ${result.brokenAt!.reason}\n`);
  return 1;
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
