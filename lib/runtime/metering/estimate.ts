/**
 * Token estimates for when a provider reports no usage (a cut stream, a client gone) and for
 * sizing budget reservations before a call. About four characters a token for English text and
 * code; a few tokens of framing per message; images at a flat rate.
 */

const CHARS_PER_TOKEN = 4;
const TOKENS_PER_MESSAGE = 4;
const TOKENS_PER_IMAGE = 1_000;
const MAX_DEPTH = 32;

/** Estimated prompt tokens of an OpenAI or Anthropic request body. */
export function estimateInputTokens(body: Record<string, unknown>): number {
  const tally = { chars: 0, tokens: 0 };
  const messages = body.messages;
  if (Array.isArray(messages)) tally.tokens += messages.length * TOKENS_PER_MESSAGE;
  walk(messages, tally, 0);
  walk(body.system, tally, 0);
  walk(body.tools, tally, 0);
  walk(body.functions, tally, 0);
  return Math.ceil(tally.chars / CHARS_PER_TOKEN) + tally.tokens;
}

/** Estimated tokens of `bytes` bytes of generated text. */
export function tokensForBytes(bytes: number): number {
  return Math.ceil(bytes / CHARS_PER_TOKEN);
}

function walk(value: unknown, tally: { chars: number; tokens: number }, depth: number): void {
  if (typeof value === 'string') {
    if (isInlineImage(value)) tally.tokens += TOKENS_PER_IMAGE;
    else tally.chars += value.length;
  } else if (Array.isArray(value)) {
    if (depth < MAX_DEPTH) for (const item of value) walk(item, tally, depth + 1);
  } else if (value && typeof value === 'object') {
    if (depth >= MAX_DEPTH) return;
    const obj = value as Record<string, unknown>;
    // Anthropic image/document blocks carry base64 in source.data; OpenAI in image_url.url.
    if (obj.type === 'image' || obj.type === 'image_url' || obj.type === 'input_image') {
      tally.tokens += TOKENS_PER_IMAGE;
      return;
    }
    for (const key in obj) walk(obj[key], tally, depth + 1);
  }
}

function isInlineImage(value: string): boolean {
  return value.length > 64 && value.startsWith('data:image/');
}
