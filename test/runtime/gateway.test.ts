/**
 * Gateway mode: agent -> sidecar -> gateway -> provider with the official SDKs, the sidecar
 * signing its agent's identity and the gateway refusing anything unsigned, forged, altered or
 * replayed; metrics and budgets in the gateway keyed by the verified agent.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { signatureLines } from '../../lib/runtime/upstream/signing';
import { FakeLlm } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, testConfig } from '../support/sidecar';

let fake: FakeLlm;
let gateway: Sidecar;
let support: Sidecar;
let research: Sidecar;
const dir = mkdtempSync(path.join(tmpdir(), 'cdk-agents-keys-'));
const keyFile = (name: string, value: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, value);
  return file;
};
const SUPPORT_KEY = 'k-support-0123456789abcdef0123456789abcdef';
const RESEARCH_KEY = 'k-research-fedcba9876543210fedcba9876543210';

beforeAll(async () => {
  fake = await FakeLlm.start();
  gateway = await Sidecar.start({
    config: {
      version: 1,
      mode: 'gateway',
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      providers: [
        { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { env: 'GW_OPENAI_KEY' } },
        { name: 'anthropic', type: 'anthropic', baseUrl: fake.url, apiKey: { env: 'GW_ANTHROPIC_KEY' } },
      ],
      gateway: {
        agents: [
          { name: 'support', team: 'care', signingKey: { file: keyFile('support', SUPPORT_KEY) } },
          { name: 'research', signingKey: { file: keyFile('research', RESEARCH_KEY) } },
        ],
      },
      rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 3 }],
      // Kept for the verified agent's team; research, connected without a team, is under none.
      budgets: [{ scope: 'team', unit: 'tokens', period: 'day', limit: 1_000_000 }],
    },
    env: { GW_OPENAI_KEY: 'sk-provider-openai', GW_ANTHROPIC_KEY: 'sk-ant-provider' },
  });
  const sidecarFor = (agent: string, key: string) =>
    Sidecar.start({
      config: testConfig({
        agent: { name: agent },
        providers: [{ name: 'gateway', type: 'cdk-agents-gateway', baseUrl: gateway.url, signingKey: { file: keyFile(`${agent}-own`, key) } }],
      }),
    });
  [support, research] = await Promise.all([sidecarFor('support', SUPPORT_KEY), sidecarFor('research', RESEARCH_KEY)]);
});

afterAll(async () => {
  await Promise.all([support?.stop(), research?.stop()]);
  await gateway?.stop();
  await fake?.close();
});

beforeEach(() => fake.reset());

test('both SDKs reach the provider through sidecar and gateway; only the gateway holds provider keys', async () => {
  const openai = new OpenAI({ baseURL: support.openaiBaseUrl, apiKey: 'agent-has-no-key', maxRetries: 0 });
  const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-agent-user': 'u-1' } });
  expect(completion.choices[0].message.content).toBeTruthy();
  const anthropic = new Anthropic({ baseURL: support.url, apiKey: 'agent-has-no-key', maxRetries: 0 });
  const stream = anthropic.messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });
  const final = await stream.finalMessage();
  expect(final.usage.output_tokens).toBeGreaterThan(0);
  expect(fake.requests.map((r) => r.headers.authorization ?? r.headers['x-api-key'])).toEqual(['Bearer sk-provider-openai', 'sk-ant-provider']);
  // Nothing of the signature or the identity leaks to the provider.
  for (const r of fake.requests) expect(Object.keys(r.headers).filter((h) => h.startsWith('x-cdk-agents') || h.startsWith('x-agent'))).toEqual([]);
});

test('the gateway meters and limits by the verified agent, not by what a client claims', async () => {
  const before = await gateway.metricsText();
  const ask = (sidecar: Sidecar) =>
    new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'x', maxRetries: 0 }).chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .then(() => 200, (e: { status: number; code: string }) => `${e.status} ${e.code}`);
  // support already made 2 calls in the previous test: its rate limit (3 per minute) has one left.
  expect([await ask(support), await ask(support)]).toEqual([200, '429 rate_limited']);
  expect(await ask(research)).toBe(200);
  const after = await gateway.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { agent: 'support', code: '200' })).toBe(1);
  expect(metricDelta(before, after, 'llm_requests_total', { agent: 'research', code: '200' })).toBe(1);
});

describe('the gateway refuses', () => {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const headers = { 'content-type': 'application/json' };
  const post = (extra: Record<string, string>, payload = body) => rawPost(`${gateway.url}/v1/chat/completions`, payload, { ...headers, ...extra });
  const signed = (key: string, agent: string, payload = body, now = Date.now()) =>
    Object.fromEntries(
      signatureLines(key, 'POST', '/v1/chat/completions', { agent }, Buffer.from(payload), now)
        .trim()
        .split('\r\n')
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
    );

  test.each([
    ['an unsigned request', () => post({})],
    ['a forged agent header without a signature', () => post({ 'x-cdk-agents-agent': 'support' })],
    ['a request signed with the wrong key', () => post(signed(RESEARCH_KEY, 'support'))],
    ['an unknown agent', () => post(signed(SUPPORT_KEY, 'intruder'))],
    ['an altered body', () => post(signed(SUPPORT_KEY, 'support'), body.replace('hi', 'ho'))],
    ['a stale signature', () => post(signed(SUPPORT_KEY, 'support', body, Date.now() - 120_000))],
  ])('%s: 401 unauthenticated, nothing upstream', async (_name, send) => {
    const res = await send();
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe('unauthenticated');
    expect(fake.requests).toHaveLength(0);
  });

  test('a replayed request: the first is served, the copy refused', async () => {
    const once = signed(SUPPORT_KEY, 'support');
    // research has room in its rate limit; use its key for a clean count.
    const replay = signed(RESEARCH_KEY, 'research');
    expect((await post(replay)).status).toBe(200);
    expect((await post(replay)).status).toBe(401);
    expect(once).toBeDefined();
    expect(fake.requests).toHaveLength(1);
  });
});

test('a team budget counts the calls of the team\'s agents; an agent without a team is under none', async () => {
  const text = await gateway.metricsText();
  const series = text.split('\n').filter((l) => l.startsWith('budget_usage_ratio{'));
  expect(series).toHaveLength(1);
  expect(series[0]).toContain('agent="support"');
  expect(series[0]).toContain('scope="team"');
  expect(Number(series[0].split(' ').pop())).toBeGreaterThan(0);
});
