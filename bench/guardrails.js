#!/usr/bin/env node
/**
 * Guardrails micro-benchmark, on the compiled modules (dist/lib/runtime/guardrails, built by
 * `npm run build`; GUARDRAILS_LIB=DIR points at another compiled lib/ tree instead).
 *
 *   inputScan10kbMedianMs          InputGuard.inspect of a 10 KB prompt, default rules (floor: 0.2 ms)
 *   outputScanCleanBodyMedianMs    OutputGuard.inspectBody of a 10 KB completion with no secret
 *   streamRedactorPerEventMedianUs StreamGuard.onEvent per OpenAI chunk of a streamed answer
 *
 * Each figure is the median of many timed runs (process.hrtime) after a warm-up. Prints JSON.
 */
const path = require('node:path');

const lib = path.resolve(process.env.GUARDRAILS_LIB || path.join(__dirname, '..', 'dist', 'lib'));
let modules;
try {
  modules = {
    ...require(path.join(lib, 'spec', 'policy.js')),
    ...require(path.join(lib, 'runtime', 'guardrails', 'input-guard.js')),
    ...require(path.join(lib, 'runtime', 'guardrails', 'output-guard.js')),
  };
} catch (err) {
  console.error(`bench/guardrails.js: cannot load the compiled guardrails from ${lib} (run \`npm run build\` first): ${err.message}`);
  process.exit(1);
}
const { GuardrailsSchema, InputGuard, OutputGuard } = modules;

const config = GuardrailsSchema.parse({});

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/** Median over `runs` timings of fn(), in milliseconds, after `warmup` untimed calls. */
function time(fn, { warmup, runs }) {
  for (let i = 0; i < warmup; i++) fn();
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(samples);
}

const round = (x, digits) => Number(x.toFixed(digits));

// Ordinary prose with numbers, punctuation, a little code and markdown: what prompts look like.
const PROSE = [
  'The quarterly report covers revenue, churn and the hiring plan for the platform team; ',
  'revenue grew 12.5% to $4.2M while churn fell from 3.1% to 2.4% (see table 3). ',
  'Please summarize the main risks, list three follow-ups, and keep it under 200 words. ',
  'Run `kubectl get pods -n agents` and check that every pod is Ready before the rollout.\n',
  '## Notes\n- The API returns 429 when the budget is exhausted.\n- Retries use exponential backoff.\n',
].join('');
const repeat = (text, bytes) => text.repeat(Math.ceil(bytes / text.length)).slice(0, bytes);

// 1. Input: a request whose new turn is 10 KB.
const request = {
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are a careful analyst. Answer concisely and cite the figures you use.' },
    { role: 'user', content: 'Hello!' },
    { role: 'assistant', content: 'Hi, how can I help?' },
    { role: 'user', content: repeat(PROSE, 10_240) },
  ],
};
const requestBytes = Buffer.byteLength(JSON.stringify(request));
const input = new InputGuard(config);
const inputScan10kbMedianMs = time(() => input.inspect('openai', request, requestBytes, 3_000), { warmup: 2_000, runs: 5_000 });

// 2. Output: a whole 10 KB completion without a secret, as OpenAI sends it (pretty-printed).
const output = new OutputGuard(config);
const completion = {
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_760_000_000,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: repeat(PROSE, 10_240), refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3_000, completion_tokens: 2_500, total_tokens: 5_500 },
};
const body = Buffer.from(JSON.stringify(completion, null, 2));
if (output.inspectBody('openai', body).body !== body) throw new Error('the clean body was rewritten');
const outputScanCleanBodyMedianMs = time(() => output.inspectBody('openai', body), { warmup: 2_000, runs: 5_000 });

// 3. Stream: an answer streamed as OpenAI does, one " token" per chunk.
const tokens = repeat(PROSE, 4_000).match(/ ?[^ ]+/g);
const chunk = (delta, finish = null) =>
  Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_760_000_000, model: 'gpt-4o-mini', system_fingerprint: 'fp_bench', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`);
const events = [chunk({ role: 'assistant', content: '' }), ...tokens.map((t) => chunk({ content: t })), chunk({}, 'stop'), Buffer.from('data: [DONE]\n\n')];
const streamMs = time(
  () => {
    const stream = output.newStream('openai');
    for (const e of events) stream.onEvent(e);
    stream.end();
    stream.takeDecisions();
  },
  { warmup: 200, runs: 500 },
);
const streamRedactorPerEventMedianUs = (streamMs * 1_000) / events.length;

console.log(
  JSON.stringify({
    inputScan10kbMedianMs: round(inputScan10kbMedianMs, 4),
    outputScanCleanBodyMedianMs: round(outputScanCleanBodyMedianMs, 4),
    streamRedactorPerEventMedianUs: round(streamRedactorPerEventMedianUs, 2),
  }),
);
