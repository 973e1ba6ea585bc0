/**
 * A real Redis server for tests: Debian's redis-server on a free loopback port, no persistence.
 * It can be stopped and started again on the same port to test outages and recovery.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export class RedisServer {
  private child: ChildProcess | null = null;

  /** With TLS: the self-signed certificate's file, for clients to trust. */
  readonly caFile?: string;
  private readonly keyFile?: string;

  private constructor(
    readonly port: number,
    private readonly password?: string,
    tlsDir?: string,
  ) {
    if (tlsDir) {
      this.caFile = path.join(tlsDir, 'cert.pem');
      this.keyFile = path.join(tlsDir, 'key.pem');
    }
  }

  /**
   * Starts redis-server (requires the redis-server binary: apt-get install -y redis-server).
   * `tls`: serve TLS only, with a self-signed certificate for localhost/127.0.0.1 made by openssl.
   */
  static async start(options: { password?: string; tls?: boolean } = {}): Promise<RedisServer> {
    let tlsDir: string | undefined;
    if (options.tls) {
      tlsDir = mkdtempSync(path.join(tmpdir(), 'redis-tls-'));
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', path.join(tlsDir, 'key.pem'), '-out', path.join(tlsDir, 'cert.pem'),
      ], { stdio: 'ignore' });
    }
    const server = new RedisServer(await freePort(), options.password, tlsDir);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `${this.caFile ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null;
  }

  async startProcess(): Promise<void> {
    const ports = this.caFile
      ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.caFile, '--tls-key-file', this.keyFile!, '--tls-ca-cert-file', this.caFile, '--tls-auth-clients', 'no']
      : ['--port', String(this.port)];
    // DEBUG (SLEEP) lets a test make the server hang.
    const args = [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--enable-debug-command', 'yes'];
    if (this.password) args.push('--requirepass', this.password);
    this.child = spawn('redis-server', args, { stdio: 'ignore' });
    const child = this.child;
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} (is redis-server installed?)`);
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Stops the server (SIGKILL: an outage, not a graceful shutdown). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.child = null;
  }

  /**
   * Kills the server and starts a new one on the same port: nothing is persisted, so it comes
   * back empty (keys, scripts and connections all gone), as a managed Redis after a failover
   * to a replica that had not synced, or a restarted cache node.
   */
  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  /**
   * Makes the server hang for `seconds` (DEBUG SLEEP). Resolves once it has stopped answering,
   * with a promise of its waking up (wrapped: an async function would wait for a returned promise).
   */
  async hang(seconds: number): Promise<{ awake: Promise<void> }> {
    const sleeper = spawn('redis-cli', ['-p', String(this.port), 'DEBUG', 'SLEEP', String(seconds)], { stdio: 'ignore' });
    const awake = new Promise<void>((r) => sleeper.once('exit', () => r()));
    const deadline = Date.now() + 5_000;
    while (await answers(this.port, 100)) {
      if (Date.now() > deadline) throw new Error('redis did not start hanging');
    }
    return { awake };
  }

  /** Runs one command with redis-cli (for assertions on what is stored). */
  cli(...args: string[]): string {
    const auth = this.password ? ['-a', this.password, '--no-auth-warning'] : [];
    const tls = this.caFile ? ['--tls', '--cacert', this.caFile] : [];
    return execFileSync('redis-cli', ['-p', String(this.port), ...tls, ...auth, ...args], { encoding: 'utf8' }).trim();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Whether the server answers a PING within `ms` (a hanging server accepts but does not answer). */
function answers(port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, ms);
    s.once('data', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
