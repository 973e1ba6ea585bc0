/**
 * The command line of dist/sidecar.js: quick mode (no config file), --config with --check, the
 * exit codes and messages of bad configs (78, every problem by path) and bad arguments (2, with
 * usage), secrets from the environment and from files, --version, and a port already taken.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from '../support/fake-llm';
import { rawPost, Sidecar, sumSamples, testConfig, writeConfig } from '../support/sidecar';

const pkg = require('../../package.json') as { version: string };

let fake: FakeLlm;
const running: Sidecar[] = [];

beforeAll(async () => {
  fake = await FakeLlm.start();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  fake.reset();
});

afterAll(async () => {
  await fake?.close();
});

async function start(options: Parameters<typeof Sidecar.start>[0]): Promise<Sidecar> {
  const sidecar = await Sidecar.start(options);
  running.push(sidecar);
  return sidecar;
}

function tempFile(name: string, content: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'cdk-agents-cli-')), name);
  writeFileSync(file, content);
  return file;
}

function quickArgs(...extra: string[]): string[] {
  return ['--listen', '127.0.0.1:0', '--openai-base-url', fake.openaiUrl, '--anthropic-base-url', fake.url, '--admin', '127.0.0.1:0', ...extra];
}

/** One OpenAI and one Anthropic call through the sidecar, with the given client keys. */
async function callBoth(sidecar: Sidecar, openaiKey: string, anthropicKey: string): Promise<void> {
  const openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: openaiKey, maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: anthropicKey, maxRetries: 0 });
  fake.script({ text: 'from openai' }, { text: 'from anthropic' });
  const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  expect(completion.choices[0].message.content).toBe('from openai');
  const message = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
  expect(message.content).toEqual([{ type: 'text', text: 'from anthropic' }]);
  expect(fake.requests.map((r) => r.path)).toEqual(['/v1/chat/completions', '/v1/messages']);
}

/** The lines of a config error report: "  path: message". */
function issuePaths(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /^ {2}\S/.test(l))
    .map((l) => l.trim().slice(0, l.trim().indexOf(': ')));
}

describe('quick mode', () => {
  test("proxies both APIs, forwarding the client's own key when no key is in the environment", async () => {
    const sidecar = await start({ args: quickArgs() });
    expect(sidecar.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await callBoth(sidecar, 'sk-client-own', 'sk-ant-client-own');
    expect(fake.requests[0].headers.authorization).toBe('Bearer sk-client-own');
    // This Anthropic SDK sends its key as a bearer token; a raw x-api-key is forwarded too (below).
    expect(fake.requests[1].headers['x-api-key'] ?? fake.requests[1].headers.authorization).toMatch(/^(Bearer )?sk-ant-client-own$/);
    expect(fake.requests[1].headers['anthropic-version']).toBeDefined();
    const raw = await rawPost(sidecar.url + '/v1/messages', JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      'x-api-key': 'sk-ant-raw-own',
    });
    expect(raw.status).toBe(200);
    expect(fake.requests[2].headers['x-api-key']).toBe('sk-ant-raw-own');

    // Metered under the default agent name, on the admin listener.
    const metrics = await sidecar.metricsText();
    expect(sumSamples(metrics, 'llm_requests_total', { agent: 'local', provider: 'openai', code: '200' })).toBe(1);
    expect(sumSamples(metrics, 'llm_requests_total', { agent: 'local', provider: 'anthropic', code: '200' })).toBe(2);
  });

  test('injects OPENAI_API_KEY and ANTHROPIC_API_KEY when they are set, replacing the client key', async () => {
    const sidecar = await start({
      args: quickArgs('--agent', 'my-bot'),
      env: { OPENAI_API_KEY: 'sk-env-openai', ANTHROPIC_API_KEY: 'sk-env-anthropic' },
    });
    await callBoth(sidecar, 'sk-client-own', 'sk-ant-client-own');
    expect(fake.requests[0].headers.authorization).toBe('Bearer sk-env-openai');
    expect(fake.requests[1].headers['x-api-key']).toBe('sk-env-anthropic');
    expect(fake.requests[1].headers.authorization).toBeUndefined();
    const seen = JSON.stringify(fake.requests.map((r) => r.headers));
    expect(seen).not.toContain('client-own');
    expect(sumSamples(await sidecar.metricsText(), 'llm_requests_total', { agent: 'my-bot', code: '200' })).toBe(2);
  });

  test('a malformed --listen is a usage error', async () => {
    const { code, stderr } = await Sidecar.run(['--listen', 'localhost']);
    expect(code).toBe(2);
    expect(stderr).toContain('--listen must be HOST:PORT');
    expect(stderr).toContain('Usage:');
  });
});

describe('--config', () => {
  const validConfig = (): SidecarConfigInput =>
    testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { env: 'CHECK_KEY' } }] });

  test('--check with a valid config exits 0 without serving', async () => {
    const { code, stderr } = await Sidecar.run(['--config', writeConfig(validConfig()), '--check'], { CHECK_KEY: 'sk-x' });
    expect(code).toBe(0);
    expect(stderr).toContain('config ok');
    expect(stderr).not.toContain('"msg":"listening"');
  });

  test('an invalid config exits 78 listing every problem with its path', async () => {
    const file = tempFile(
      'bad.json',
      JSON.stringify({
        version: 2,
        agent: { name: 'Bad_Name' },
        listne: { host: '127.0.0.1', port: 0 },
        providers: [
          { name: 'p1', type: 'openai-ish', baseUrl: 'ftp://example.com' },
          { name: 'p1', type: 'anthropic', apiKey: 'sk-a-literal-key' },
        ],
        timeouts: { firstByteMs: -5 },
        limits: { maxBodyBytes: 10 },
      }),
    );
    for (const args of [['--config', file], ['--config', file, '--check']]) {
      const { code, stderr } = await Sidecar.run(args);
      expect(code).toBe(78);
      expect(stderr).toContain('invalid config');
      expect(issuePaths(stderr).sort()).toEqual(
        [
          'version',
          'agent.name',
          'listne',
          'providers[0].type',
          'providers[0].baseUrl',
          'providers[1].apiKey',
          'providers[1].name',
          'timeouts.firstByteMs',
          'limits.maxBodyBytes',
        ].sort(),
      );
      // The literal key is refused without being echoed back.
      expect(stderr).not.toContain('sk-a-literal-key');
    }
  });

  test('a Redis URL read from a reference is checked at start, without echoing it', async () => {
    const urlFile = tempFile('redis-url', 'rediss://default:hunter2@cache.example:6379\n');
    const config = { ...validConfig(), store: { type: 'redis', url: { file: urlFile } } };
    const { code, stderr } = await Sidecar.run(['--config', writeConfig(config as never), '--check'], { CHECK_KEY: 'sk-x' });
    expect(code).toBe(78);
    expect(stderr).toMatch(/^ {2}store\.url: the referenced value must be redis:\/\/HOST:PORT/m);
    expect(stderr).not.toContain('hunter2');
  });

  test('a config file that is not JSON exits 78', async () => {
    const { code, stderr } = await Sidecar.run(['--config', tempFile('broken.json', '{"version": 1,')]);
    expect(code).toBe(78);
    expect(stderr).toMatch(/^ {2}\(root\): not valid JSON/m);
  });

  test('an unreadable config path exits 2 with usage', async () => {
    const missing = path.join(tmpdir(), 'cdk-agents-no-such-dir', 'sidecar.json');
    let result = await Sidecar.run(['--config', missing]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`cannot read config ${missing}`);
    expect(result.stderr).toContain('Usage:');

    result = await Sidecar.run(['--config', mkdtempSync(path.join(tmpdir(), 'cdk-agents-dir-'))]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Usage:');

    if (process.getuid?.() !== 0) {
      const locked = writeConfig(validConfig());
      chmodSync(locked, 0o000);
      result = await Sidecar.run(['--config', locked], { CHECK_KEY: 'sk-x' });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('EACCES');
    }
  });

  test('unknown arguments and missing values exit 2 with usage', async () => {
    for (const args of [['--bogus'], ['--config', writeConfig(validConfig()), '--verbose'], ['--config'], ['--listen', '--check']]) {
      const { code, stderr } = await Sidecar.run(args, { CHECK_KEY: 'sk-x' });
      expect({ args, code }).toEqual({ args, code: 2 });
      expect(stderr).toContain('Usage:');
    }
    expect((await Sidecar.run(['--bogus'])).stderr).toContain('unknown argument "--bogus"');
  });

  test('--config combined with quick-mode flags is rejected', async () => {
    const { code, stderr } = await Sidecar.run(['--config', writeConfig(validConfig()), '--listen', '127.0.0.1:0'], { CHECK_KEY: 'sk-x' });
    expect(code).toBe(2);
    expect(stderr).toContain('--listen cannot be combined with --config');
    expect(stderr).toContain('Usage:');
  });
});

describe('provider keys', () => {
  test('an apiKey env variable that is not set exits 78 naming providers[0].apiKey.env', async () => {
    const file = writeConfig(testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { env: 'MISSING_OPENAI_KEY' } }] }));
    for (const env of [{}, { MISSING_OPENAI_KEY: '   ' }]) {
      const { code, stderr } = await Sidecar.run(['--config', file], env);
      expect(code).toBe(78);
      expect(stderr).toMatch(/^ {2}providers\[0\]\.apiKey\.env: .*MISSING_OPENAI_KEY/m);
    }
  });

  test('an apiKey file that does not exist exits 78 naming providers[0].apiKey.file', async () => {
    const missing = path.join(tmpdir(), 'cdk-agents-no-such-dir', 'key');
    const file = writeConfig(testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { file: missing } }] }));
    const { code, stderr } = await Sidecar.run(['--config', file]);
    expect(code).toBe(78);
    expect(stderr).toMatch(/^ {2}providers\[0\]\.apiKey\.file: .*ENOENT/m);
  });

  test('every unreadable secret is reported in one run', async () => {
    const file = writeConfig(
      testConfig({
        providers: [
          { name: 'a', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { env: 'NOPE_A' } },
          { name: 'b', type: 'anthropic', baseUrl: fake.url, apiKey: { file: tempFile('empty-key', '\n') } },
        ],
      }),
    );
    const { code, stderr } = await Sidecar.run(['--config', file, '--check']);
    expect(code).toBe(78);
    expect(issuePaths(stderr)).toEqual(['providers[0].apiKey.env', 'providers[1].apiKey.file']);
  });

  test("a key file's value is injected", async () => {
    const openaiKey = tempFile('openai-key', 'sk-from-file\n');
    const anthropicKey = tempFile('anthropic-key', '  sk-ant-from-file  \n');
    const sidecar = await start({
      config: testConfig({
        providers: [
          { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { file: openaiKey } },
          { name: 'anthropic', type: 'anthropic', baseUrl: fake.url, apiKey: { file: anthropicKey } },
        ],
      }),
    });
    await callBoth(sidecar, 'sk-client-own', 'sk-ant-client-own');
    expect(fake.requests[0].headers.authorization).toBe('Bearer sk-from-file');
    expect(fake.requests[1].headers['x-api-key']).toBe('sk-ant-from-file');
    expect(JSON.stringify(fake.requests.map((r) => r.headers))).not.toContain('client-own');
  });
});

test('--version prints the package version and exits 0', async () => {
  const { code, stdout, stderr } = await Sidecar.run(['--version']);
  expect(code).toBe(0);
  expect((stdout + stderr).trim()).toBe(pkg.version);
});

test('--help prints usage and exits 0', async () => {
  const { code, stdout, stderr } = await Sidecar.run(['--help']);
  expect(code).toBe(0);
  expect(stdout + stderr).toContain('--config FILE');
});

describe('a listen address already in use', () => {
  let blocker: net.Server;
  let busyPort: number;

  beforeAll(async () => {
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    busyPort = (blocker.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  });

  test.each([
    ['the proxy listener', (port: number) => ({ listen: { host: '127.0.0.1', port } })],
    ['the admin listener', (port: number) => ({ admin: { host: '127.0.0.1', port } })],
  ])('on %s: the process fails with a non-zero exit', async (_name, where) => {
    const file = writeConfig(testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl }], ...where(busyPort) }));
    const { code, stderr } = await Sidecar.run(['--config', file]);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('EADDRINUSE');
    expect(stderr).not.toContain('"msg":"listening"');
  });
});
