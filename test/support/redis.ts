/**
 * A real Redis server for tests: Debian's redis-server on a free loopback port, no persistence.
 * It can be stopped and started again on the same port to test outages and recovery.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';

export class RedisServer {
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    private readonly password?: string,
  ) {}

  /** Starts redis-server (requires the redis-server binary: apt-get install -y redis-server). */
  static async start(options: { password?: string } = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), options.password);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null;
  }

  async startProcess(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];
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

  /** Runs one command with redis-cli (for assertions on what is stored). */
  cli(...args: string[]): string {
    const auth = this.password ? ['-a', this.password, '--no-auth-warning'] : [];
    return execFileSync('redis-cli', ['-p', String(this.port), ...auth, ...args], { encoding: 'utf8' }).trim();
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

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
