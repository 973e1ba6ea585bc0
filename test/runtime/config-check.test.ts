/**
 * Config validation accepts exactly what the runtime can run: for configs built from valid parts
 * (every section, policy included) and the same configs with one part broken, with every secret
 * they reference provided, `validateSidecarConfig` accepts a config if and only if the runtime
 * can be created from it, and `node dist/sidecar.js --config F --check` exits 0 for it (78
 * otherwise, never a crash or a hang). In process with `Runtime.create` for many configs; as a
 * process for a bounded sample.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { Runtime } from '../../lib/runtime/runtime';
import { validateSidecarConfig, type SidecarConfigInput } from '../../lib/spec/config';
import { brokenConfigArb, fullConfigArb, provideSecrets } from '../support/config-arbitraries';
import { RedisServer } from '../support/redis';
import { SIDECAR } from '../support/sidecar';

let redis: RedisServer;
let dir: string;

beforeAll(async () => {
  redis = await RedisServer.start();
  dir = mkdtempSync(path.join(tmpdir(), 'cdk-agents-config-check-'));
});

afterAll(async () => {
  await redis?.stop();
});

/** Valid configs, and broken ones, about half each; a live Redis among the stores. */
const cases = () => {
  const valid = fullConfigArb(redis.url);
  return fc.oneof(valid, brokenConfigArb(valid));
};

/** The config as it would be deployed: written to JSON, its secrets in place. */
function deploy(input: SidecarConfigInput): { config: SidecarConfigInput; env: Record<string, string> } {
  const { config, env, files } = provideSecrets(input, dir, redis.url);
  for (const [file, value] of Object.entries(files)) writeFileSync(file, value);
  return { config: JSON.parse(JSON.stringify(config)), env };
}

/** Runs `sidecar.js --config F --check`: its exit code, or 'hang' if it had not exited after 5 s. */
function check(config: SidecarConfigInput, env: Record<string, string>): Promise<{ code: number | 'hang'; stderr: string }> {
  const file = path.join(dir, 'sidecar.json');
  writeFileSync(file, JSON.stringify(config));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SIDECAR, '--config', file, '--check'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 'hang', stderr });
    });
  });
}

test('in process: every config the validator accepts, the runtime can be created from (and it refuses the rest)', () => {
  // Each runtime registers exit and error handlers for its audit log on stdout; none of them writes here.
  process.setMaxListeners(0);
  process.stdout.setMaxListeners(0);
  let accepted = 0;
  fc.assert(
    fc.property(cases(), (input) => {
      const { config: deployed, env } = deploy(input);
      const { config, issues } = validateSidecarConfig(deployed);
      if (!config) {
        expect(issues.length).toBeGreaterThan(0);
        return;
      }
      accepted++;
      let runtime: Runtime | undefined;
      try {
        runtime = Runtime.create(config, env);
      } catch (err) {
        throw new Error(`accepted by validation, refused by the runtime: ${(err as Error).stack}\n${JSON.stringify(deployed)}`);
      } finally {
        runtime?.close();
      }
    }),
    { numRuns: 300 },
  );
  // Both sides of the property were exercised.
  expect(accepted).toBeGreaterThan(60);
  expect(accepted).toBeLessThan(290);
});

test('as a process: `--check` exits 0 exactly for the configs the validator accepts, 78 for the rest, and never hangs', async () => {
  const seen = { ok: 0, refused: 0 };
  await fc.assert(
    fc.asyncProperty(cases(), async (input) => {
      const { config, env } = deploy(input);
      const valid = validateSidecarConfig(config).config !== undefined;
      const { code, stderr } = await check(config, env);
      expect({ code, stderr: code === 0 || code === 78 ? '' : stderr }).toEqual({ code: valid ? 0 : 78, stderr: '' });
      if (valid) {
        expect(stderr).toContain('config ok');
        seen.ok++;
      } else {
        expect(stderr).toContain('invalid config');
        seen.refused++;
      }
    }),
    { numRuns: 40 },
  );
  expect(seen.ok).toBeGreaterThan(5);
  expect(seen.refused).toBeGreaterThan(5);
}, 60_000);
