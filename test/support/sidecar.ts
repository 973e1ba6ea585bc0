/**
 * Runs the built runtime (dist/sidecar.js) as a real child process, the way it ships.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { SidecarConfigInput } from '../../lib/spec';
import { SIDECAR_NODE_FLAGS } from '../../lib/spec/runtime-command';

export const SIDECAR = path.join(__dirname, '..', '..', 'dist', 'sidecar.js');

export interface SidecarOptions {
  /** A config to write to a file and pass with --config. */
  config?: SidecarConfigInput;
  /** Raw arguments instead (quick mode). */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** The program and its leading arguments (a container's command); default: node with the shipped flags and dist/sidecar.js. */
  command?: readonly string[];
}

export class Sidecar {
  readonly stderr: string[] = [];
  readonly stdout: string[] = [];
  url = '';
  adminUrl = '';
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    lines(child.stderr!, (l) => this.stderr.push(l));
    lines(child.stdout!, (l) => this.stdout.push(l));
  }

  /** Starts a sidecar and waits until it listens. */
  static async start(options: SidecarOptions): Promise<Sidecar> {
    const args = options.args ?? ['--config', writeConfig(options.config!)];
    const [program, ...leading] = options.command ?? [process.execPath, ...SIDECAR_NODE_FLAGS, SIDECAR];
    const child = spawn(program, [...leading, ...args], {
      env: { PATH: process.env.PATH, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const sidecar = new Sidecar(child);
    const listening = await sidecar.waitForLog('listening', 10_000);
    sidecar.url = `http://${listening.proxy}`;
    if (listening.admin) sidecar.adminUrl = `http://${listening.admin}`;
    return sidecar;
  }

  /** Runs the sidecar to its exit (for start-up failures). */
  static async run(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; stdout: string }> {
    const child = spawn(process.execPath, [SIDECAR, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.on('data', (d) => (stdout += d));
    // 'close', not 'exit': the output pipes are read to their end.
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    return { code, stderr, stdout };
  }

  /** Resolves with the fields of the first stderr log line whose msg is `msg`. */
  async waitForLog(msg: string, timeoutMs = 5_000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const line of this.stderr) {
        try {
          const entry = JSON.parse(line);
          if (entry.msg === msg) return entry;
        } catch {
          // not a log line
        }
      }
      if (this.child.exitCode !== null) throw new Error(`sidecar exited (${this.child.exitCode}) before "${msg}":\n${this.stderr.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`no "${msg}" log within ${timeoutMs} ms:\n${this.stderr.join('\n')}`);
      await sleep(20);
    }
  }

  /** The OpenAI SDK base URL pointing at this sidecar. */
  get openaiBaseUrl(): string {
    return `${this.url}/v1`;
  }

  async metricsText(): Promise<string> {
    const res = await fetch(`${this.adminUrl || this.url}/metrics`);
    return res.text();
  }

  /** Sum of the samples of `name` whose labels include `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sumSamples(await this.metricsText(), name, labels);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  get exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition into samples. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

export function sumSamples(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseMetrics(text)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

export function writeConfig(config: SidecarConfigInput): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'cdk-agents-'));
  const file = path.join(dir, 'sidecar.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** A sidecar config on any free port with an admin listener, for tests. */
export function testConfig(overrides: Partial<SidecarConfigInput> & Pick<SidecarConfigInput, 'providers'>): SidecarConfigInput {
  return {
    version: 1,
    agent: { name: 'test-agent' },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    ...overrides,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

/** How much a metric (summed over matching series) grew between two scrapes. */
export function metricDelta(before: string, after: string, name: string, labels: Record<string, string> = {}): number {
  return sumSamples(after, name, labels) - sumSamples(before, name, labels);
}

/** A POST with full control of the headers (fetch refuses hop-by-hop ones). */
export function rawPost(url: string, body: string | Buffer, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
