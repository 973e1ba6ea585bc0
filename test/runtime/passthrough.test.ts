/**
 * Paths other than the two proxied APIs pass through to the right provider untouched (counted,
 * not token-metered); credentials are replaced only when the runtime holds the provider key; and
 * provider URL layouts (a base path prefix, Azure OpenAI deployments and its v1 API) are honoured.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { anthropicMessage, FakeLlm, openAiCompletion } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, testConfig } from '../support/sidecar';

const OPENAI_KEY = 'sk-real-openai-key';
const ANTHROPIC_KEY = 'sk-ant-real-anthropic-key';
const AZURE_KEY = 'azure-real-key';
const AZURE_VERSION = '2024-10-21';

/** The provider answering OpenAI-shaped calls, and the one answering Anthropic-shaped calls. */
let openaiFake: FakeLlm;
let anthropicFake: FakeLlm;
/** Holds both provider keys. */
let keyed: Sidecar;
/** Holds no key: an OpenAI-compatible server under a path prefix, and Anthropic. */
let keyless: Sidecar;
/** Azure OpenAI, deployment-style URLs. */
let azure: Sidecar;
/** Azure OpenAI, the /openai/v1 API. */
let azureV1: Sidecar;

const agent = 'test-agent';
const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hi' }] };

beforeAll(async () => {
  [openaiFake, anthropicFake] = await Promise.all([FakeLlm.start(), FakeLlm.start()]);
  const env = { TEST_OPENAI_KEY: OPENAI_KEY, TEST_ANTHROPIC_KEY: ANTHROPIC_KEY, TEST_AZURE_KEY: AZURE_KEY };
  [keyed, keyless, azure, azureV1] = await Promise.all([
    Sidecar.start({
      config: testConfig({
        providers: [
          { name: 'openai', type: 'openai', baseUrl: openaiFake.openaiUrl, apiKey: { env: 'TEST_OPENAI_KEY' } },
          { name: 'anthropic', type: 'anthropic', baseUrl: anthropicFake.url, apiKey: { env: 'TEST_ANTHROPIC_KEY' } },
        ],
      }),
      env,
    }),
    Sidecar.start({
      config: testConfig({
        providers: [
          { name: 'compat', type: 'openai-compatible', baseUrl: `${openaiFake.url}/api/openai/v1/` },
          { name: 'anthropic-own-key', type: 'anthropic', baseUrl: anthropicFake.url },
        ],
      }),
      env,
    }),
    Sidecar.start({
      config: testConfig({
        providers: [
          {
            name: 'azure',
            type: 'azure-openai',
            baseUrl: openaiFake.url,
            apiKey: { env: 'TEST_AZURE_KEY' },
            apiVersion: AZURE_VERSION,
            deployments: { 'gpt-4o-mini': 'prod-4o-mini' },
          },
        ],
      }),
      env,
    }),
    Sidecar.start({
      config: testConfig({ providers: [{ name: 'azure-v1', type: 'azure-openai', baseUrl: openaiFake.url, apiKey: { env: 'TEST_AZURE_KEY' } }] }),
      env,
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([keyed, keyless, azure, azureV1].map((s) => s?.stop()));
  await Promise.all([openaiFake?.close(), anthropicFake?.close()]);
});

beforeEach(() => {
  openaiFake.reset();
  anthropicFake.reset();
});

function openai(sidecar: Sidecar, apiKey = 'agent-holds-no-key'): OpenAI {
  return new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey, maxRetries: 0 });
}

function anthropic(sidecar: Sidecar, options: { apiKey?: string; authToken?: string } = { apiKey: 'agent-holds-no-key' }): Anthropic {
  return new Anthropic({ baseURL: sidecar.url, maxRetries: 0, ...options });
}

describe('pass-through paths', () => {
  test('GET /v1/models reaches the provider with its key injected and returns its body', async () => {
    const before = await keyed.metricsText();
    const page = await openai(keyed).models.list();
    expect(page.data).toEqual([{ id: 'gpt-4o-mini', object: 'model' }]);

    expect(openaiFake.requests).toHaveLength(1);
    const seen = openaiFake.requests[0];
    expect(seen.method).toBe('GET');
    expect(seen.path).toBe('/v1/models');
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(anthropicFake.requests).toHaveLength(0);

    const after = await keyed.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'openai', model: 'none', code: '200' })).toBe(1);
  });

  test('a POST to another OpenAI path reaches the provider byte for byte, and its answer comes back unchanged', async () => {
    // Odd spacing and key order: re-serializing the body would show.
    const body = '{"input":  ["héllo", "wörld"],\n  "model":"text-embedding-3-small", "dimensions": 8}';
    const before = await keyed.metricsText();
    const res = await rawPost(`${keyed.url}/v1/embeddings?trace=abc`, body, { 'content-type': 'application/json', authorization: 'Bearer agent-holds-no-key' });

    expect(openaiFake.requests).toHaveLength(1);
    const seen = openaiFake.requests[0];
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/v1/embeddings?trace=abc');
    expect(seen.raw).toBe(body);
    expect(seen.headers['content-type']).toBe('application/json');
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);

    // The fake answers any POST with a completion (usage included): returned as is, and not token-metered.
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body);
    expect(answer.id).toMatch(/^chatcmpl-fake-\d+$/);
    expect(res.body).toBe(JSON.stringify(openAiCompletion(seen.body, {}, Number(answer.id.split('-').at(-1)))));
    expect(res.headers['x-request-id']).toMatch(/^req_fake_\d+$/);

    const after = await keyed.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'openai', model: 'none', code: '200' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { model: 'text-embedding-3-small' })).toBe(0);
    expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_cost_usd_total')).toBe(0);
  });

  test("a provider's error status, headers and body on a pass-through path come back unchanged", async () => {
    const errorBody = '{"error": {"message": "no such route", "type": "invalid_request_error"}}';
    openaiFake.script({ status: 404, errorBody, headers: { 'x-upstream-marker': 'kept' } });
    const before = await keyed.metricsText();
    const res = await rawPost(`${keyed.url}/v1/fine_tuning/jobs`, '{"training_file":"file-abc"}', { 'content-type': 'application/json' });
    expect(res.status).toBe(404);
    expect(res.body).toBe(errorBody);
    expect(res.headers['x-upstream-marker']).toBe('kept');
    expect(openaiFake.requests.map((r) => r.path)).toEqual(['/v1/fine_tuning/jobs']);

    const after = await keyed.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'openai', model: 'none', code: '404' })).toBe(1);
  });

  test("Anthropic's count_tokens is routed by anthropic-version to the Anthropic provider, unchanged", async () => {
    const before = await keyed.metricsText();
    const params = { model: 'claude-sonnet-4-6', messages: [{ role: 'user' as const, content: 'How many tokens is this?' }] };
    const counted = await anthropic(keyed).messages.countTokens(params);

    expect(openaiFake.requests).toHaveLength(0);
    expect(anthropicFake.requests).toHaveLength(1);
    let seen = anthropicFake.requests[0];
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/v1/messages/count_tokens');
    expect(seen.raw).toBe(JSON.stringify(params));
    expect(seen.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    // The fake answers with a message; whatever the provider said is what the client gets.
    expect(counted).toEqual(anthropicMessage(seen.body, {}, Number(String((counted as any).id).replace('msg_fake_', ''))));

    // A raw client with nothing but the anthropic-version header is routed the same way.
    const body = '{"model": "claude-sonnet-4-6",  "messages": [{"role": "user", "content": "x"}]}';
    const res = await rawPost(`${keyed.url}/v1/messages/count_tokens`, body, { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' });
    expect(res.status).toBe(200);
    expect(openaiFake.requests).toHaveLength(0);
    expect(anthropicFake.requests).toHaveLength(2);
    seen = anthropicFake.requests[1];
    expect(seen.raw).toBe(body);
    expect(seen.headers['anthropic-version']).toBe('2023-06-01');
    expect(seen.headers['x-api-key']).toBe(ANTHROPIC_KEY);

    const after = await keyed.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'anthropic', model: 'none', code: '200' })).toBe(2);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'openai' })).toBe(0);
    expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
  });
});

describe('credentials', () => {
  test("with a key configured, every credential header the client sent is replaced by the provider's", async () => {
    // OpenAI-shaped: the client's Authorization and a stray api-key are dropped, ours goes in.
    const res = await rawPost(`${keyed.url}/v1/chat/completions`, JSON.stringify(chat), {
      'content-type': 'application/json',
      authorization: 'Bearer sk-client-own',
      'api-key': 'client-azure-style-key',
    });
    expect(res.status).toBe(200);
    let headers = openaiFake.requests[0].headers;
    expect(headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(headers['api-key']).toBeUndefined();
    expect(headers['x-api-key']).toBeUndefined();

    // Anthropic-shaped, on a pass-through path: the client's x-api-key and Authorization make way for ours.
    const pass = await rawPost(`${keyed.url}/v1/messages/count_tokens`, '{"model":"claude-sonnet-4-6","messages":[]}', {
      'content-type': 'application/json',
      'x-api-key': 'sk-ant-client-own',
      authorization: 'Bearer sk-ant-client-token',
    });
    expect(pass.status).toBe(200);
    headers = anthropicFake.requests[0].headers;
    expect(headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(headers.authorization).toBeUndefined();
    expect(openaiFake.requests).toHaveLength(1);
  });

  test("without a key configured, the client's own Authorization is forwarded unchanged", async () => {
    await openai(keyless, 'sk-client-own-openai').chat.completions.create(chat);
    await openai(keyless, 'sk-client-own-openai').models.list();
    expect(openaiFake.requests).toHaveLength(2);
    for (const r of openaiFake.requests) expect(r.headers.authorization).toBe('Bearer sk-client-own-openai');
  });

  test("without a key configured, the client's own Anthropic credentials are forwarded unchanged", async () => {
    const ask = { model: 'claude-sonnet-4-6', max_tokens: 64, messages: [{ role: 'user' as const, content: 'hi' }] };
    // This SDK sends its apiKey as a bearer token.
    await anthropic(keyless, { apiKey: 'sk-ant-client-own' }).messages.create(ask);
    await anthropic(keyless, { apiKey: 'sk-ant-client-own' }).messages.countTokens({ model: ask.model, messages: ask.messages });
    // A client sending x-api-key, on the proxied path and on a pass-through path.
    const headers = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-raw-client' };
    expect((await rawPost(`${keyless.url}/v1/messages`, JSON.stringify(ask), headers)).status).toBe(200);
    expect((await rawPost(`${keyless.url}/v1/messages/count_tokens`, JSON.stringify({ model: ask.model, messages: ask.messages }), headers)).status).toBe(200);

    expect(openaiFake.requests).toHaveLength(0);
    expect(anthropicFake.requests.map((r) => r.path)).toEqual(['/v1/messages', '/v1/messages/count_tokens', '/v1/messages', '/v1/messages/count_tokens']);
    const [create, count, rawCreate, rawCount] = anthropicFake.requests;
    for (const r of [create, count]) {
      expect(r.headers.authorization).toBe('Bearer sk-ant-client-own');
      expect(r.headers['x-api-key']).toBeUndefined();
    }
    for (const r of [rawCreate, rawCount]) {
      expect(r.headers['x-api-key']).toBe('sk-ant-raw-client');
      expect(r.headers.authorization).toBeUndefined();
    }
  });
});

describe('provider URL layouts', () => {
  test('an OpenAI-compatible base URL with a path prefix keeps the prefix, for chat and pass-through', async () => {
    const before = await keyless.metricsText();
    const completion = await openai(keyless).chat.completions.create(chat);
    expect(completion.choices[0].message.content).toBeTruthy();
    await openai(keyless).models.list();
    await rawPost(`${keyless.url}/v1/embeddings`, '{"input":"x","model":"e5"}', { 'content-type': 'application/json' });

    expect(openaiFake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /api/openai/v1/chat/completions',
      'GET /api/openai/v1/models',
      'POST /api/openai/v1/embeddings',
    ]);

    const after = await keyless.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'compat', model: 'gpt-4o-mini', code: '200' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'compat', model: 'none', code: '200' })).toBe(2);
    expect(metricDelta(before, after, 'llm_tokens_total', { agent, provider: 'compat', model: 'gpt-4o-mini', type: 'output' })).toBe(9);
  });

  test('Azure OpenAI with apiVersion and deployments: deployment URL, api-version and api-key', async () => {
    const before = await azure.metricsText();
    openaiFake.script({ usage: { input: 15, output: 6 } });
    const completion = await openai(azure).chat.completions.create(chat);
    expect(completion).toEqual(openAiCompletion(chat, { usage: { input: 15, output: 6 } }, Number(completion.id.split('-').at(-1))));

    const seen = openaiFake.requests[0];
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe(`/openai/deployments/prod-4o-mini/chat/completions?api-version=${AZURE_VERSION}`);
    expect(seen.headers['api-key']).toBe(AZURE_KEY);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.raw).toBe(JSON.stringify(chat));

    const after = await azure.metricsText();
    const labels = { agent, provider: 'azure', model: 'gpt-4o-mini' };
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'input' })).toBe(15);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'output' })).toBe(6);
    expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '200' })).toBe(1);
  });

  test('Azure OpenAI deployments: an unmapped model is its own deployment; streams and client query strings keep the layout', async () => {
    await openai(azure).chat.completions.create({ ...chat, model: 'gpt-4.1' });
    const stream = await openai(azure).chat.completions.create({ ...chat, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('Hello! How can I help you today?');
    // A client naming its own api-version gets the configured one; its other parameters stay.
    const res = await rawPost(`${azure.url}/v1/chat/completions?api-version=1999-01-01&trace=on`, JSON.stringify(chat), { 'content-type': 'application/json' });
    expect(res.status).toBe(200);

    const [unmapped, streamed, queried] = openaiFake.requests;
    expect(unmapped.path).toBe(`/openai/deployments/gpt-4.1/chat/completions?api-version=${AZURE_VERSION}`);
    expect(streamed.path).toBe(`/openai/deployments/prod-4o-mini/chat/completions?api-version=${AZURE_VERSION}`);
    expect(streamed.headers['api-key']).toBe(AZURE_KEY);
    const url = new URL(queried.path, 'http://x');
    expect(url.pathname).toBe('/openai/deployments/prod-4o-mini/chat/completions');
    expect(url.searchParams.getAll('api-version')).toEqual([AZURE_VERSION]);
    expect(url.searchParams.get('trace')).toBe('on');
  });

  test('Azure OpenAI without apiVersion uses the /openai/v1 API with api-key', async () => {
    const before = await azureV1.metricsText();
    const completion = await openai(azureV1).chat.completions.create(chat);
    expect(completion.object).toBe('chat.completion');
    await openai(azureV1).models.list();

    expect(openaiFake.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /openai/v1/chat/completions', 'GET /openai/v1/models']);
    for (const r of openaiFake.requests) {
      expect(r.headers['api-key']).toBe(AZURE_KEY);
      expect(r.headers.authorization).toBeUndefined();
    }
    expect(openaiFake.requests[0].raw).toBe(JSON.stringify(chat));

    const after = await azureV1.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'azure-v1', model: 'gpt-4o-mini', code: '200' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { agent, provider: 'azure-v1', model: 'none', code: '200' })).toBe(1);
  });
});
