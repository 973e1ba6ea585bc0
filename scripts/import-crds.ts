/**
 * Regenerates the CRD bindings in lib/imports from the vendored CRD files in lib/imports/crds
 * (`npm run import`). Offline: the CRDs are local files and the cdk8s upgrade check is off.
 *
 * One `cdk8s import` per CRD file, each into its own module named after the file
 * (lib/imports/keda.sh_scaledobjects.ts): cdk8s names a module after the API group, so the three
 * keda.sh CRDs would otherwise overwrite each other's keda.sh.ts.
 *
 * Versions a CRD no longer serves (external-secrets.io/v1beta1) are dropped before import, so
 * there is no binding for an object the API server would refuse.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';

const root = path.join(__dirname, '..');
const importsDir = path.join(root, 'lib', 'imports');
const defaultCrdDir = path.join(importsDir, 'crds');
// The package's exports hide bin/, so resolve it from package.json.
const cli = path.join(path.dirname(require.resolve('cdk8s-cli/package.json')), 'bin', 'cdk8s');

const GENERATED = '// GENERATED FILE: do not edit by hand.';
const HEADER = [
  GENERATED,
  '// Regenerate with `npm run import` (scripts/import-crds.ts) from lib/imports/crds/%FILE%.',
  '',
].join('\n');

interface CrdVersion { name: string; served?: boolean }
interface Crd { kind?: string; spec?: { versions?: CrdVersion[] } }

function servedOnly(file: string): string {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as Crd | null)
    .filter((d): d is Crd => d !== null && d.kind === 'CustomResourceDefinition');
  for (const crd of docs) {
    const spec = crd.spec;
    if (!spec?.versions) throw new Error(`${file}: a CRD without spec.versions`);
    spec.versions = spec.versions.filter((v) => v.served !== false);
    if (spec.versions.length === 0) throw new Error(`${file}: no served version`);
  }
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

function importOne(crdFile: string, work: string, outDir: string): string {
  const base = path.basename(crdFile, '.yaml');
  const input = path.join(work, `${base}.yaml`);
  const out = path.join(work, base);
  fs.writeFileSync(input, servedOnly(crdFile));
  // cwd = the scratch dir: no cdk8s.yaml there, so the project's config is neither read nor rewritten.
  const run = spawnSync(
    process.execPath,
    [cli, 'import', '--no-check-upgrade', '--no-save', '-l', 'typescript', '-o', out, input],
    { cwd: work, encoding: 'utf8' },
  );
  if (run.status !== 0) throw new Error(`cdk8s import ${base} failed:\n${run.stdout}${run.stderr}`);
  const produced = fs.readdirSync(out).filter((f) => f.endsWith('.ts'));
  if (produced.length !== 1) throw new Error(`cdk8s import ${base}: expected one module, got ${produced.join(', ')}`);
  const code = fs.readFileSync(path.join(out, produced[0]), 'utf8');
  const target = path.join(outDir, `${base}.ts`);
  fs.writeFileSync(target, HEADER.replace('%FILE%', `${base}.yaml`) + code);
  return target;
}

/** Generates one module per CRD file in `crdDir` into `outDir`; returns the files written. */
export function importCrds(outDir: string = importsDir, crdDir: string = defaultCrdDir): string[] {
  const crds = fs.readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).sort();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-agents-import-'));
  try {
    return crds.map((f) => importOne(path.join(crdDir, f), work, outDir));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const written = new Set(importCrds());
  // A generated module whose CRD file was removed must not linger.
  for (const f of fs.readdirSync(importsDir)) {
    const p = path.join(importsDir, f);
    if (f.endsWith('.ts') && !written.has(p) && fs.readFileSync(p, 'utf8').startsWith(GENERATED)) fs.rmSync(p);
  }
  for (const p of written) console.log(`wrote ${path.relative(root, p)}`);
}
