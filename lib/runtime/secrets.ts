/**
 * Secret values behind config references. Read at start (a missing secret stops the process);
 * mounted files are read again periodically, so a rotated Kubernetes Secret takes effect
 * without a restart.
 */
import { readFileSync, promises as fs } from 'node:fs';
import type { ConfigIssue, SecretRef } from '../spec/config';
import { log } from './log';

const RELOAD_MS = 60_000;

export class SecretValue {
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private current: string,
    private readonly file?: string,
  ) {}

  get value(): string {
    return this.current;
  }

  /**
   * Resolves a reference, or returns the problem located at `path` (the config path of the ref).
   */
  static resolve(ref: SecretRef, path: string, env: NodeJS.ProcessEnv = process.env): SecretValue | ConfigIssue {
    if (ref.env !== undefined) {
      const value = env[ref.env]?.trim();
      if (!value) return { path: `${path}.env`, message: `environment variable ${ref.env} is not set or is empty` };
      return new SecretValue(value);
    }
    const file = ref.file!;
    try {
      const value = readFileSync(file, 'utf8').trim();
      if (!value) return { path: `${path}.file`, message: `${file} is empty` };
      const secret = new SecretValue(value, file);
      secret.watch();
      return secret;
    } catch (err) {
      return { path: `${path}.file`, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
  }

  private watch(): void {
    this.timer = setInterval(() => {
      fs.readFile(this.file!, 'utf8').then(
        (text) => {
          const value = text.trim();
          if (value && value !== this.current) {
            this.current = value;
            log.info('secret reloaded', { file: this.file });
          }
        },
        (err: NodeJS.ErrnoException) => log.warn('secret reload failed; keeping the previous value', { file: this.file, error: err.code ?? err.message }),
      );
    }, RELOAD_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
