#!/usr/bin/env node
/**
 * Bundles the runtime into dist/sidecar.js (one file, no node_modules at run time) and writes
 * the config's JSON Schema next to it. Runs after `tsc` has compiled lib/ into dist/lib.
 */
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const out = path.join(root, 'dist', 'sidecar.js');

esbuild.buildSync({
  entryPoints: [path.join(root, 'lib', 'runtime', 'main.ts')],
  outfile: out,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  banner: { js: '#!/usr/bin/env node' },
  define: { 'process.env.CDK_AGENTS_BUILD_VERSION': JSON.stringify(pkg.version) },
});
fs.chmodSync(out, 0o755);

const z = require('zod');
const { SidecarConfigSchema } = require(path.join(root, 'dist', 'lib', 'spec', 'config.js'));
const schema = z.toJSONSchema(SidecarConfigSchema, { io: 'input', unrepresentable: 'any' });
schema.$id = `https://cdk-agents.dev/schemas/sidecar-config-${pkg.version}.json`;
schema.title = 'cdk-agents SidecarConfig';
fs.writeFileSync(path.join(root, 'dist', 'sidecar-config.schema.json'), `${JSON.stringify(schema, null, 2)}\n`);

const size = fs.statSync(out).size;
process.stdout.write(`dist/sidecar.js ${(size / 1024).toFixed(1)} KiB; dist/sidecar-config.schema.json\n`);
