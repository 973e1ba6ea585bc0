/**
 * The last step of `npm run synth`: every reference from the synthesized YAML (dist/k8s) into the
 * synthesized Terraform (dist/tf) checked on the files alone, as a CI job would check a GitOps
 * repository: IRSA roles and their trust, secrets and their properties, the SecretStore's region
 * and rights, KEDA's queues. Exits 1 listing every mismatch.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { crossReferenceProblems, platformNames } from '../lib/cloud';
import { platform } from './platform';

/** Every document of every YAML file under `dir`. */
function manifests(dir: string): unknown[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .sort()
    .flatMap((file) => parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => doc.toJS()))
    .filter((object) => object !== null);
}

const root = path.join(__dirname, '..');
const objects = manifests(path.join(root, 'dist', 'k8s'));
const tf = JSON.parse(readFileSync(path.join(root, 'dist', 'tf', 'stacks', 'platform', 'cdk.tf.json'), 'utf8'));
// KEDA's operator is installed outside these manifests; its ServiceAccount is the spec's.
const keda = platformNames(platform).keda;
const problems = crossReferenceProblems(objects, tf, { kedaOperator: { namespace: keda.namespace, serviceAccount: keda.serviceAccount } });
if (problems.length > 0) {
  process.stderr.write(`dist/k8s and dist/tf disagree (${problems.length}):\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(`dist/k8s -> dist/tf: ${objects.length} objects, every cross-reference matches\n`);
