/**
 * Request bodies across API shapes, for failover from one shape's providers to the other's:
 * an OpenAI Chat Completions request sent to an Anthropic Messages provider, and the reverse.
 *
 * The translation keeps what the model sees (instructions, turns, images, tools and their
 * results) and the generation limits; fields with no counterpart are dropped when dropping them
 * cannot change what the client gets back in a way it relies on, and rejected with a
 * TranslationError when it would (several choices, a JSON schema, audio, server-side tools).
 */

type Json = Record<string, unknown>;

/**
 * A request the other API shape cannot serve faithfully. The integrator answers it as a 400
 * (`invalid_request_error`) in the client's shape, with `param` naming the offending field.
 */
export class TranslationError extends Error {
  readonly code = 'invalid_request_error';
  constructor(
    message: string,
    readonly param?: string,
  ) {
    super(message);
    this.name = 'TranslationError';
  }
}

/**
 * Anthropic requires max_tokens; OpenAI does not (the model's limit applies). 4096 is what
 * every current Claude model can produce and what OpenAI answers rarely exceed.
 */
export const DEFAULT_MAX_TOKENS = 4096;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function given(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 ? v : undefined;
}

/**
 * Anthropic tool_use ids must match ^[a-zA-Z0-9_-]+$ ("tool_use.id: String should match
 * pattern"); OpenAI-compatible servers produce ids such as "functions.get_weather:0". The
 * mapping is deterministic, so a tool call and its result keep matching.
 */
export function anthropicToolId(id: unknown): string {
  const s = typeof id === 'string' ? id.replace(/[^a-zA-Z0-9_-]/g, '_') : '';
  return s || 'toolu_missing_id';
}

/** Tool call arguments (a JSON text) as the object Anthropic's `input` must be. */
export function parseArguments(args: unknown): Json {
  if (isObject(args)) return args;
  if (typeof args !== 'string' || !args.trim()) return {};
  try {
    const parsed: unknown = JSON.parse(args);
    // A model may emit malformed arguments; Anthropic accepts only an object: the call keeps
    // its name and id with empty input rather than failing the whole failover.
    return isObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions -> Anthropic Messages
// ---------------------------------------------------------------------------------------------

interface AnthropicTurn {
  role: 'user' | 'assistant';
  content: Json[];
}

/**
 * An OpenAI Chat Completions body as the Anthropic Messages body asking `model` the same.
 * Throws TranslationError for what Anthropic cannot answer in the shape the client expects.
 */
export function openAiRequestToAnthropic(body: Record<string, unknown>, model: string): Record<string, unknown> {
  refuseOpenAiOnly(body);
  const { system, messages } = openAiMessagesToAnthropic(body.messages);
  const out: Json = { model };
  if (system.length === 1) out.system = system[0].text;
  else if (system.length > 1) out.system = system;
  out.messages = messages;
  // max_tokens is deprecated in favour of max_completion_tokens; Anthropic requires one.
  out.max_tokens = positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens) ?? DEFAULT_MAX_TOKENS;

  if (typeof body.temperature === 'number') {
    // OpenAI samples at 0..2, Anthropic at 0..1. Values above 1 are clamped to 1 (the most
    // varied Anthropic allows) rather than scaled, so 0..1 keeps its meaning exactly.
    out.temperature = Math.min(Math.max(body.temperature, 0), 1);
  }
  if (typeof body.top_p === 'number' && out.temperature === undefined) {
    // Recent Claude models reject both at once ("`temperature` and `top_p` cannot both be
    // specified for this model"); temperature, the common knob, wins.
    out.top_p = body.top_p;
  }
  const stop = typeof body.stop === 'string' ? [body.stop] : Array.isArray(body.stop) ? body.stop.filter((s) => typeof s === 'string' && s) : [];
  if (stop.length) out.stop_sequences = stop;
  if (body.stream === true) out.stream = true;
  const user = typeof body.user === 'string' && body.user ? body.user : typeof body.safety_identifier === 'string' && body.safety_identifier ? body.safety_identifier : undefined;
  if (user) out.metadata = { user_id: user };

  const tools = openAiToolsToAnthropic(body);
  if (tools.length) {
    const { tools: offered, choice } = openAiToolChoiceToAnthropic(body, tools);
    if (offered.length) {
      out.tools = offered;
      // parallel_tool_calls: false is Anthropic's disable_parallel_tool_use, which lives on
      // tool_choice (auto being the default either API applies when tools are given).
      const chosen = choice ?? (body.parallel_tool_calls === false ? { type: 'auto' } : undefined);
      if (chosen && body.parallel_tool_calls === false && chosen.type !== 'none') chosen.disable_parallel_tool_use = true;
      if (chosen) out.tool_choice = chosen;
    }
  }
  // Dropped, having no Anthropic counterpart and no effect on the answer's shape: frequency_penalty,
  // presence_penalty, logit_bias, logprobs/top_logprobs (the answer's logprobs stay null), seed,
  // service_tier, store, metadata (stored completions), prediction, prompt_cache_key,
  // reasoning_effort, verbosity, web_search_options, stream_options (usage always comes with
  // Anthropic streams), response_format text/json_object (the prompt asks for JSON already:
  // OpenAI requires it to mention JSON).
  return out;
}

function refuseOpenAiOnly(body: Json): void {
  if (given(body.n) && body.n !== 1) {
    throw new TranslationError('n > 1 is not supported by the fallback provider (Anthropic Messages returns one answer)', 'n');
  }
  const format = body.response_format;
  if (isObject(format) && format.type === 'json_schema') {
    throw new TranslationError('response_format json_schema is not supported by the fallback provider (Anthropic Messages)', 'response_format');
  }
  if (given(body.audio) || (Array.isArray(body.modalities) && body.modalities.includes('audio'))) {
    throw new TranslationError('audio output is not supported by the fallback provider (Anthropic Messages)', 'modalities');
  }
}

function openAiMessagesToAnthropic(list: unknown): { system: { type: 'text'; text: string }[]; messages: Json[] } {
  if (!Array.isArray(list)) throw new TranslationError("'messages' must be an array", 'messages');
  const system: { type: 'text'; text: string }[] = [];
  const turns: AnthropicTurn[] = [];
  // Anthropic requires alternating roles: consecutive same-role turns become one.
  const push = (role: 'user' | 'assistant', blocks: Json[]) => {
    if (!blocks.length) return; // Anthropic rejects empty turns.
    const last = turns[turns.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else turns.push({ role, content: blocks });
  };
  // The deprecated `function_call` has no ids: a function result answers the latest call.
  let legacyId = 'toolu_legacy_0';
  let legacyCount = 0;
  list.forEach((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw new TranslationError(`'${at}' must be an object`, at);
    switch (m.role) {
      case 'system':
      case 'developer':
        // Anthropic has one top-level system prompt: instructions given anywhere join it.
        system.push(...textOnly(m.content, `${at}.content`));
        return;
      case 'user':
        push('user', openAiUserContent(m.content, `${at}.content`));
        return;
      case 'assistant': {
        const blocks: Json[] = openAiAssistantText(m.content, `${at}.content`);
        if (Array.isArray(m.tool_calls)) {
          m.tool_calls.forEach((call: unknown, j) => {
            const where = `${at}.tool_calls[${j}]`;
            if (!isObject(call) || (call.type !== undefined && call.type !== 'function') || !isObject(call.function)) {
              throw new TranslationError(`'${where}': only function tool calls can be sent to the fallback provider`, where);
            }
            blocks.push({ type: 'tool_use', id: anthropicToolId(call.id), name: String(call.function.name ?? ''), input: parseArguments(call.function.arguments) });
          });
        }
        if (isObject(m.function_call)) {
          legacyId = `toolu_legacy_${legacyCount++}`;
          blocks.push({ type: 'tool_use', id: legacyId, name: String(m.function_call.name ?? ''), input: parseArguments(m.function_call.arguments) });
        }
        push('assistant', blocks);
        return;
      }
      case 'tool':
        if (typeof m.tool_call_id !== 'string') throw new TranslationError(`'${at}.tool_call_id' is required`, `${at}.tool_call_id`);
        push('user', [toolResult(anthropicToolId(m.tool_call_id), m.content, `${at}.content`)]);
        return;
      case 'function':
        push('user', [toolResult(legacyId, m.content, `${at}.content`)]);
        return;
      default:
        throw new TranslationError(`'${at}.role' ${JSON.stringify(m.role)} has no Anthropic counterpart`, `${at}.role`);
    }
  });
  const messages = turns.map((t) => {
    // "Messages following tool_use blocks must begin with a matching number of tool_result
    // blocks": after a merge, tool results go first, everything else keeps its order.
    const content = t.role === 'user' ? [...t.content.filter((b) => b.type === 'tool_result'), ...t.content.filter((b) => b.type !== 'tool_result')] : t.content;
    return { role: t.role, content: content.length === 1 && isPlainText(content[0]) ? content[0].text : content };
  });
  return { system, messages };
}

function isPlainText(block: Json): block is { type: 'text'; text: string } {
  return block.type === 'text' && Object.keys(block).length === 2;
}

/** Text of a system/tool message: a string or text parts. Empty text is dropped (Anthropic rejects it). */
function textOnly(content: unknown, at: string): { type: 'text'; text: string }[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : [];
  if (content === undefined || content === null) return [];
  if (!Array.isArray(content)) throw new TranslationError(`'${at}' must be a string or an array of content parts`, at);
  const out: { type: 'text'; text: string }[] = [];
  content.forEach((part: unknown, i) => {
    if (!isObject(part) || part.type !== 'text' || typeof part.text !== 'string') {
      throw new TranslationError(`'${at}[${i}]': only text parts are allowed here`, `${at}[${i}]`);
    }
    if (part.text) out.push({ type: 'text', text: part.text });
  });
  return out;
}

function openAiAssistantText(content: unknown, at: string): Json[] {
  if (!Array.isArray(content)) return textOnly(content, at);
  // Assistant parts are text or refusal; a refusal was said to the user, so it stays as text.
  return textOnly(
    content.map((p: unknown) => (isObject(p) && p.type === 'refusal' ? { type: 'text', text: p.refusal } : p)),
    at,
  );
}

function openAiUserContent(content: unknown, at: string): Json[] {
  if (!Array.isArray(content)) return textOnly(content, at);
  const out: Json[] = [];
  content.forEach((part: unknown, i) => {
    const where = `${at}[${i}]`;
    if (!isObject(part)) throw new TranslationError(`'${where}' must be an object`, where);
    switch (part.type) {
      case 'text':
        if (typeof part.text !== 'string') throw new TranslationError(`'${where}.text' must be a string`, where);
        if (part.text) out.push({ type: 'text', text: part.text });
        return;
      case 'image_url': {
        const url = isObject(part.image_url) ? part.image_url.url : undefined;
        out.push({ type: 'image', source: imageSource(url, `${where}.image_url.url`) });
        return;
      }
      case 'file':
        out.push(fileDocument(part.file, `${where}.file`));
        return;
      case 'input_audio':
        throw new TranslationError(`'${where}': audio input is not supported by the fallback provider (Anthropic Messages)`, where);
      default:
        throw new TranslationError(`'${where}': content part type ${JSON.stringify(part.type)} is not supported by the fallback provider`, where);
    }
  });
  return out;
}

const DATA_URI = /^data:([^;,]*)((?:;[^;,]*)*?)(;base64)?,(.*)$/s;

/** A data: URI as media type and base64 data, or null when `url` is not one. */
function dataUri(url: string): { mediaType: string; base64: string } | null {
  const m = DATA_URI.exec(url);
  if (!m) return null;
  const data = m[3] ? m[4] : Buffer.from(decodeURIComponent(m[4]), 'utf8').toString('base64');
  return { mediaType: m[1] || 'text/plain', base64: data };
}

/** OpenAI image_url (a data: URI or an http(s) URL) as an Anthropic image source. */
function imageSource(url: unknown, at: string): Json {
  if (typeof url !== 'string') throw new TranslationError(`'${at}' must be a string`, at);
  const data = dataUri(url);
  if (data) return { type: 'base64', media_type: data.mediaType, data: data.base64 };
  if (/^https?:\/\//i.test(url)) return { type: 'url', url };
  throw new TranslationError(`'${at}' must be a data: URI or an http(s) URL`, at);
}

/** An OpenAI file part (base64 file_data) as an Anthropic document block: PDF or plain text. */
function fileDocument(file: unknown, at: string): Json {
  if (!isObject(file)) throw new TranslationError(`'${at}' must be an object`, at);
  if (typeof file.file_data !== 'string') {
    throw new TranslationError(`'${at}': only inline file_data can be sent to the fallback provider (file_id refers to OpenAI's storage)`, at);
  }
  // file_data is documented as base64; clients send it as a data: URI.
  const data = dataUri(file.file_data) ?? { mediaType: 'application/pdf', base64: file.file_data };
  const title = typeof file.filename === 'string' && file.filename ? { title: file.filename } : {};
  if (data.mediaType === 'application/pdf') return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: data.base64 }, ...title };
  if (data.mediaType.startsWith('text/plain')) {
    return { type: 'document', source: { type: 'text', media_type: 'text/plain', data: Buffer.from(data.base64, 'base64').toString('utf8') }, ...title };
  }
  throw new TranslationError(`'${at}': file type ${data.mediaType} is not supported by the fallback provider (PDF and plain text are)`, at);
}

function toolResult(toolUseId: string, content: unknown, at: string): Json {
  const block: Json = { type: 'tool_result', tool_use_id: toolUseId };
  if (typeof content === 'string') {
    if (content) block.content = content;
  } else {
    const parts = textOnly(content, at);
    if (parts.length) block.content = parts;
  }
  return block;
}

interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: Json;
}

function openAiToolsToAnthropic(body: Json): AnthropicTool[] {
  const out: AnthropicTool[] = [];
  const add = (fn: Json, at: string) => {
    if (typeof fn.name !== 'string' || !fn.name) throw new TranslationError(`'${at}.name' is required`, `${at}.name`);
    const tool: AnthropicTool = { name: fn.name, input_schema: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} } };
    if (typeof fn.description === 'string' && fn.description) tool.description = fn.description;
    // `strict` is dropped: Anthropic's strict tool use exists only on some models.
    out.push(tool);
  };
  if (Array.isArray(body.tools)) {
    body.tools.forEach((t: unknown, i) => {
      const at = `tools[${i}]`;
      if (!isObject(t) || t.type !== 'function' || !isObject(t.function)) {
        throw new TranslationError(`'${at}': only function tools can be sent to the fallback provider (Anthropic Messages)`, at);
      }
      add(t.function, `${at}.function`);
    });
  } else if (Array.isArray(body.functions)) {
    // The deprecated `functions` parameter.
    body.functions.forEach((f: unknown, i) => {
      if (!isObject(f)) throw new TranslationError(`'functions[${i}]' must be an object`, `functions[${i}]`);
      add(f, `functions[${i}]`);
    });
  }
  return out;
}

/** tool_choice (or the deprecated function_call) as Anthropic's, possibly narrowing the tools. */
function openAiToolChoiceToAnthropic(body: Json, tools: AnthropicTool[]): { tools: AnthropicTool[]; choice: Json | undefined } {
  const choice = given(body.tool_choice) ? body.tool_choice : body.function_call;
  if (!given(choice)) return { tools, choice: undefined };
  if (choice === 'auto') return { tools, choice: { type: 'auto' } };
  if (choice === 'none') return { tools, choice: { type: 'none' } };
  if (choice === 'required') return { tools, choice: { type: 'any' } };
  if (isObject(choice)) {
    if (choice.type === 'function' && isObject(choice.function) && typeof choice.function.name === 'string') {
      return { tools, choice: { type: 'tool', name: choice.function.name } };
    }
    if (choice.type === undefined && typeof choice.name === 'string') return { tools, choice: { type: 'tool', name: choice.name } }; // function_call: {name}
    if (choice.type === 'allowed_tools' && isObject(choice.allowed_tools)) {
      // Anthropic has no allowed subset: the model is offered only the allowed tools.
      const allowed = new Set(
        (Array.isArray(choice.allowed_tools.tools) ? choice.allowed_tools.tools : [])
          .map((t: unknown) => (isObject(t) && isObject(t.function) ? t.function.name : undefined))
          .filter((n: unknown): n is string => typeof n === 'string'),
      );
      return { tools: tools.filter((t) => allowed.has(t.name)), choice: { type: choice.allowed_tools.mode === 'required' ? 'any' : 'auto' } };
    }
  }
  throw new TranslationError(`tool_choice ${JSON.stringify(choice)} is not supported by the fallback provider (Anthropic Messages)`, 'tool_choice');
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages -> OpenAI Chat Completions
// ---------------------------------------------------------------------------------------------

/**
 * An Anthropic Messages body as the OpenAI Chat Completions body asking `model` the same.
 * Throws TranslationError for what an OpenAI provider cannot do (server tools, MCP servers).
 */
export function anthropicRequestToOpenAi(body: Record<string, unknown>, model: string): Record<string, unknown> {
  if (given(body.mcp_servers) && (!Array.isArray(body.mcp_servers) || body.mcp_servers.length)) {
    throw new TranslationError('mcp_servers are not supported by the fallback provider (OpenAI Chat Completions)', 'mcp_servers');
  }
  const messages: Json[] = [];
  const system = anthropicText(body.system, 'system');
  if (system) messages.push({ role: 'system', content: system });
  if (!Array.isArray(body.messages)) throw new TranslationError('messages: must be an array', 'messages');
  body.messages.forEach((m: unknown, i) => {
    const at = `messages.${i}`;
    if (!isObject(m)) throw new TranslationError(`${at}: must be an object`, at);
    if (m.role === 'user') messages.push(...anthropicUserToOpenAi(m.content, `${at}.content`));
    else if (m.role === 'assistant') messages.push(...anthropicAssistantToOpenAi(m.content, `${at}.content`));
    else if (m.role === 'system') messages.push({ role: 'system', content: anthropicText(m.content, `${at}.content`) });
    else throw new TranslationError(`${at}.role: ${JSON.stringify(m.role)} has no OpenAI counterpart`, `${at}.role`);
  });

  const out: Json = { model, messages };
  // max_completion_tokens is OpenAI's current name, but OpenAI-compatible servers (vLLM, Ollama,
  // Azure's older api-versions) know only max_tokens, which OpenAI still accepts for chat models.
  if (positiveInt(body.max_tokens)) out.max_tokens = body.max_tokens;
  // Anthropic's temperature (0..1) and top_p are within OpenAI's ranges. top_k has no counterpart.
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length) out.stop = body.stop_sequences;
  if (body.stream === true) {
    out.stream = true;
    // OpenAI reports a stream's usage only when asked; the Anthropic client expects it.
    out.stream_options = { include_usage: true };
  }
  if (isObject(body.metadata) && typeof body.metadata.user_id === 'string' && body.metadata.user_id) out.user = body.metadata.user_id;

  if (Array.isArray(body.tools) && body.tools.length) {
    out.tools = body.tools.map((t: unknown, i) => anthropicToolToOpenAi(t, `tools.${i}`));
    const choice = body.tool_choice;
    if (isObject(choice)) {
      if (choice.type === 'auto') out.tool_choice = 'auto';
      else if (choice.type === 'any') out.tool_choice = 'required';
      else if (choice.type === 'none') out.tool_choice = 'none';
      else if (choice.type === 'tool' && typeof choice.name === 'string') out.tool_choice = { type: 'function', function: { name: choice.name } };
      else throw new TranslationError(`tool_choice: ${JSON.stringify(choice)} is not supported by the fallback provider`, 'tool_choice');
      if (choice.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
    }
  }
  const format = isObject(body.output_config) ? body.output_config.format : undefined;
  if (isObject(format) && format.type === 'json_schema' && isObject(format.schema)) {
    // Anthropic structured outputs, as OpenAI's: both constrain the answer to the schema.
    out.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema, strict: true } };
  }
  // Dropped: thinking (the fallback answers without a thinking block), top_k, service_tier,
  // container, context_management, inference_geo, speed, cache_control (OpenAI caches prompts
  // by itself), output_config.effort.
  return out;
}

/** A system prompt or text-only content (string or text blocks) as one string. */
function anthropicText(content: unknown, at: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new TranslationError(`${at}: must be a string or an array of text blocks`, at);
  return content
    .map((b: unknown, i) => {
      if (!isObject(b) || b.type !== 'text' || typeof b.text !== 'string') throw new TranslationError(`${at}.${i}: only text blocks are allowed here`, `${at}.${i}`);
      return b.text;
    })
    .join('\n');
}

function anthropicUserToOpenAi(content: unknown, at: string): Json[] {
  if (typeof content === 'string') return [{ role: 'user', content }];
  if (!Array.isArray(content)) throw new TranslationError(`${at}: must be a string or an array of content blocks`, at);
  // Tool results become tool messages, which OpenAI wants right after the assistant's calls;
  // the rest of the turn (and any images the results carried: tool messages hold text only)
  // follows as one user message.
  const tools: Json[] = [];
  const parts: Json[] = [];
  content.forEach((b: unknown, i) => {
    const where = `${at}.${i}`;
    if (!isObject(b)) throw new TranslationError(`${where}: must be an object`, where);
    if (b.type === 'tool_result') {
      const texts: string[] = [];
      if (typeof b.content === 'string') texts.push(b.content);
      else if (Array.isArray(b.content)) {
        b.content.forEach((c: unknown, j) => {
          const part = anthropicPartToOpenAi(c, `${where}.content.${j}`);
          if (part.type === 'text') texts.push(part.text as string);
          else parts.push(part);
        });
      }
      // is_error has no counterpart: the result's text says what went wrong.
      tools.push({ role: 'tool', tool_call_id: b.tool_use_id, content: texts.join('\n') });
    } else {
      parts.push(anthropicPartToOpenAi(b, where));
    }
  });
  const out = [...tools];
  if (parts.length) out.push({ role: 'user', content: parts.length === 1 && parts[0].type === 'text' ? parts[0].text : parts });
  return out;
}

/** A user content block (text, image, document) as an OpenAI content part. */
function anthropicPartToOpenAi(b: unknown, at: string): Json {
  if (!isObject(b)) throw new TranslationError(`${at}: must be an object`, at);
  const source = isObject(b.source) ? b.source : {};
  switch (b.type) {
    case 'text':
      return { type: 'text', text: String(b.text ?? '') };
    case 'image':
      if (source.type === 'base64') return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } };
      if (source.type === 'url') return { type: 'image_url', image_url: { url: source.url } };
      break;
    case 'document':
      if (source.type === 'base64' && source.media_type === 'application/pdf') {
        const filename = typeof b.title === 'string' && b.title ? b.title : 'document.pdf';
        return { type: 'file', file: { filename, file_data: `data:application/pdf;base64,${source.data}` } };
      }
      if (source.type === 'text') return { type: 'text', text: String(source.data ?? '') };
      break;
    default:
  }
  throw new TranslationError(`${at}: a ${String(b.type)} block${source.type ? ` (source ${String(source.type)})` : ''} is not supported by the fallback provider (OpenAI Chat Completions)`, at);
}

function anthropicAssistantToOpenAi(content: unknown, at: string): Json[] {
  if (typeof content === 'string') return [{ role: 'assistant', content }];
  if (!Array.isArray(content)) throw new TranslationError(`${at}: must be a string or an array of content blocks`, at);
  let text = '';
  const calls: Json[] = [];
  for (const b of content) {
    if (!isObject(b)) continue;
    if (b.type === 'text' && typeof b.text === 'string') text += b.text;
    else if (b.type === 'tool_use') calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
    // thinking, redacted_thinking and server tool blocks are Anthropic's own: dropped.
  }
  const message: Json = { role: 'assistant', content: calls.length && !text ? null : text };
  if (calls.length) message.tool_calls = calls;
  return [message];
}

function anthropicToolToOpenAi(t: unknown, at: string): Json {
  if (!isObject(t)) throw new TranslationError(`${at}: must be an object`, at);
  if (t.type !== undefined && t.type !== null && t.type !== 'custom') {
    throw new TranslationError(`${at}: server tool ${JSON.stringify(t.type)} is not supported by the fallback provider (OpenAI Chat Completions)`, at);
  }
  const fn: Json = { name: t.name };
  if (typeof t.description === 'string' && t.description) fn.description = t.description;
  fn.parameters = isObject(t.input_schema) ? t.input_schema : { type: 'object', properties: {} };
  if (t.strict === true) fn.strict = true;
  return { type: 'function', function: fn };
}
