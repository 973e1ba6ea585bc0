#!/usr/bin/env node
/**
 * The benchmark's fake LLM provider: OpenAI Chat Completions on loopback with precomputed
 * answers, so the provider side costs as little as possible and every target in a run is
 * measured against the same one. A streamed answer sends its events `EVENT_DELAY_MS` apart.
 *
 *   node bench/upstream.js PORT
 */
const http = require('node:http');

const port = Number(process.argv[2] || 9101);
const EVENT_DELAY_MS = 2;

const completion = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1760000000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 24, completion_tokens: 9, total_tokens: 33, prompt_tokens_details: { cached_tokens: 0 } },
    system_fingerprint: 'fp_bench',
  }),
);

function chunk(delta, finish, withUsage) {
  const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1760000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
  if (withUsage) base.usage = null;
  return `data: ${JSON.stringify(base)}\n\n`;
}

function streamEvents(withUsage) {
  const words = ['Hello', '!', ' How', ' can', ' I', ' help', ' you', ' today', '?'];
  const events = [chunk({ role: 'assistant', content: '' }, null, withUsage)];
  for (const w of words) events.push(chunk({ content: w }, null, withUsage));
  events.push(chunk({}, 'stop', withUsage));
  if (withUsage) {
    events.push(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1760000000, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 24, completion_tokens: 9, total_tokens: 33 } })}\n\n`);
  }
  events.push('data: [DONE]\n\n');
  return events.map((e) => Buffer.from(e));
}
const streams = { plain: streamEvents(false), usage: streamEvents(true) };

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    // Only streamed requests need the body read; the common case stays cheap.
    if (raw.includes('"stream":true')) {
      const body = JSON.parse(raw);
      const events = body.stream_options && body.stream_options.include_usage ? streams.usage : streams.plain;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const next = () => {
        res.write(events[i++]);
        if (i === events.length) res.end();
        else setTimeout(next, EVENT_DELAY_MS);
      };
      next();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': completion.length });
    res.end(completion);
  });
});
server.keepAliveTimeout = 120_000;
server.listen(port, '127.0.0.1', () => process.stderr.write(`bench upstream on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
