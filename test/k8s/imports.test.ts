/**
 * The committed CRD bindings (lib/imports) are exactly what `npm run import` generates from the
 * vendored CRD files (lib/imports/crds), one module per CRD file, served versions only.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { importCrds } from '../../scripts/import-crds';

const importsDir = path.join(__dirname, '..', '..', 'lib', 'imports');
const crdDir = path.join(importsDir, 'crds');

test('regenerating the bindings from the vendored CRDs gives the committed files (else: npm run import)', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'imports-'));
  try {
    const written = importCrds(out, crdDir).map((f) => path.basename(f)).sort();
    const committed = fs.readdirSync(importsDir).filter((f) => f.endsWith('.ts')).sort();
    expect(written).toEqual(committed);
    expect(written).toEqual(fs.readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, '.ts')).sort());
    const stale = written.filter((f) => fs.readFileSync(path.join(out, f), 'utf8') !== fs.readFileSync(path.join(importsDir, f), 'utf8'));
    expect(stale).toEqual([]);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 60_000);

test('every module is marked generated and binds only served versions', () => {
  const modules = fs.readdirSync(importsDir).filter((f) => f.endsWith('.ts'));
  expect(modules).toHaveLength(9);
  for (const f of modules) {
    const code = fs.readFileSync(path.join(importsDir, f), 'utf8');
    expect(code.startsWith('// GENERATED FILE: do not edit by hand.\n')).toBe(true);
    const apiVersions = [...code.matchAll(/apiVersion: '([^']+)'/g)].map((m) => m[1]);
    expect(apiVersions.length).toBeGreaterThan(0);
    // external-secrets.io/v1beta1 is in the CRD but no longer served.
    expect(apiVersions.filter((v) => v.endsWith('/v1beta1'))).toEqual([]);
  }
});
