/**
 * Runs a container of a synthesized Deployment the way the kubelet would, on loopback: its
 * command, args and env as written in the YAML, its ConfigMap volumes written out from the
 * ConfigMap objects (with their modes), Secret volumes from test values, emptyDirs as empty
 * directories. Each mount lands under a temporary root, and paths in the command, args and the
 * mounted config are mapped there; cluster addresses in the config are the test's to rewrite.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

type Json = Record<string, any>;

export interface MaterializedContainer {
  /** The container's command and args, with node as this process's node and paths mapped. */
  readonly command: string[];
  readonly args: string[];
  readonly env: Record<string, string>;
  /** Maps an absolute path inside the container to where it is on this machine. */
  hostPath(containerPath: string): string;
  /** The container spec as synthesized. */
  readonly spec: Json;
}

/** Kubernetes Secrets the test stands in for: name -> key -> value. */
export type SecretValues = Record<string, Record<string, string>>;

export function findObject(objects: readonly unknown[], kind: string, name: string): Json {
  const found = (objects as Json[]).find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind} named ${name} in the synthesized objects`);
  return found;
}

export function materializeContainer(objects: readonly unknown[], deployment: string, container: string, secrets: SecretValues): MaterializedContainer {
  const pod = findObject(objects, 'Deployment', deployment).spec.template.spec as Json;
  const spec = (pod.containers as Json[]).find((c) => c.name === container);
  if (!spec) throw new Error(`Deployment ${deployment} has no container ${container}`);
  const root = mkdtempSync(path.join(tmpdir(), `pod-${deployment}-`));
  const mounts: Array<{ at: string; dir: string }> = [];
  for (const mount of (spec.volumeMounts ?? []) as Json[]) {
    const volume = (pod.volumes as Json[]).find((v) => v.name === mount.name);
    if (!volume) throw new Error(`volume ${mount.name} is mounted but not declared`);
    if (mount.subPath) throw new Error(`subPath mounts are not supported here (${mount.name})`);
    const dir = path.join(root, mount.mountPath);
    mkdirSync(dir, { recursive: true });
    mounts.push({ at: mount.mountPath, dir });
    if (volume.configMap) {
      const data = findObject(objects, 'ConfigMap', volume.configMap.name).data as Record<string, string>;
      writeItems(dir, data, volume.configMap.items, volume.configMap.defaultMode, `ConfigMap ${volume.configMap.name}`);
    } else if (volume.secret) {
      const data = secrets[volume.secret.secretName];
      if (!data) throw new Error(`the test gives no value for Secret ${volume.secret.secretName}`);
      writeItems(dir, data, volume.secret.items, volume.secret.defaultMode, `Secret ${volume.secret.secretName}`);
    } else if (!volume.emptyDir) {
      throw new Error(`volume ${mount.name}: only configMap, secret and emptyDir volumes are supported here`);
    }
  }
  // Longest mount path first, as the container's filesystem resolves them.
  mounts.sort((a, b) => b.at.length - a.at.length);
  const hostPath = (p: string): string => {
    const m = mounts.find(({ at }) => p === at || p.startsWith(`${at}/`));
    return m ? m.dir + p.slice(m.at.length) : p;
  };
  const mapArg = (a: string) => (a.startsWith('/') ? hostPath(a) : a);
  const [program, ...rest] = (spec.command ?? []) as string[];
  if (program !== 'node') throw new Error(`container ${container} runs ${program}, not node`);
  return { command: [process.execPath, ...rest.map(mapArg)], args: ((spec.args ?? []) as string[]).map(mapArg), env: envOf(spec), hostPath, spec };
}

/** A container's literal environment, as written in the YAML. */
export function containerEnv(objects: readonly unknown[], deployment: string, container: string): Record<string, string> {
  const spec = (findObject(objects, 'Deployment', deployment).spec.template.spec.containers as Json[]).find((c) => c.name === container);
  if (!spec) throw new Error(`Deployment ${deployment} has no container ${container}`);
  return envOf(spec);
}

function envOf(spec: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of (spec.env ?? []) as Json[]) {
    if (e.valueFrom) throw new Error(`env ${e.name} comes from ${JSON.stringify(e.valueFrom)}: not supported here`);
    env[e.name] = e.value;
  }
  return env;
}

function writeItems(dir: string, data: Record<string, string>, items: Json[] | undefined, mode: number | undefined, what: string): void {
  const entries = items ? items.map((i) => [i.key as string, i.path as string]) : Object.keys(data).map((k) => [k, k]);
  for (const [key, file] of entries) {
    if (!(key in data)) throw new Error(`${what} has no key ${key}`);
    const target = path.join(dir, file);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, data[key]);
    chmodSync(target, mode ?? 0o644);
  }
}

/**
 * Reads the runtime config a container was given (`--config FILE`), maps the file references
 * in it to their mounted place, lets the test rewrite cluster addresses, and writes it back.
 */
export function adaptConfig(container: MaterializedContainer, rewrite: (config: Json) => void): Json {
  const index = container.args.indexOf('--config');
  if (index < 0) throw new Error('the container is not started with --config');
  const file = container.args[index + 1];
  const config = JSON.parse(readFileSync(file, 'utf8')) as Json;
  const mapFiles = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(mapFiles);
    else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value as Json)) {
        if ((k === 'file' || k === 'caFile') && typeof v === 'string') (value as Json)[k] = container.hostPath(v);
        else mapFiles(v);
      }
    }
  };
  mapFiles(config);
  rewrite(config);
  chmodSync(file, 0o644);
  writeFileSync(file, JSON.stringify(config));
  return config;
}
