/**
 * The example platform as `npm run synth` builds it: examples/k8s.ts run the way cdk8s.yaml runs
 * it (its rule pack and AgentPlatform checks included), and examples/cloud.ts's stack.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadSynthesized } from './k8s-validate';

const ROOT = path.join(__dirname, '..', '..');

/** Runs examples/k8s.ts the way cdk8s.yaml does, into `outdir`. */
export function synthExample(outdir: string): void {
  const result = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'examples', 'k8s.ts')], {
    cwd: ROOT,
    env: { ...process.env, CDK8S_OUTDIR: outdir },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`synth failed (${result.status}):\n${result.stderr}`);
}

/** The example's Kubernetes objects, synthesized into a fresh directory. */
export function exampleObjects(): unknown[] {
  const outdir = mkdtempSync(path.join(tmpdir(), 'example-k8s-'));
  synthExample(outdir);
  return loadSynthesized(outdir);
}
