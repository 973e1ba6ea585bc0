/**
 * Failover across API shapes: when every provider of a request's own shape failed, the
 * gateway asks a provider of the other shape, translating the request there and the answer
 * (whole, streamed or an error) back, so the client gets exactly what its own SDK expects.
 *
 *   OpenAI client  --openAiRequestToAnthropic-->  Anthropic provider
 *                  <--anthropicResponseToOpenAi / AnthropicStreamToOpenAi / errorToOpenAi--
 *   Anthropic client --anthropicRequestToOpenAi-->  OpenAI provider
 *                  <--openAiResponseToAnthropic / OpenAiStreamToAnthropic / errorToAnthropic--
 *
 * Request translation throws TranslationError (answer 400 invalid_request_error, `param` set)
 * for what the other shape cannot serve faithfully; response translation throws
 * UnreadableAnswerError when the provider's 2xx body is not JSON (answer as a bad gateway).
 * Meter usage from the provider's own bytes, before translation: Anthropic's cache writes have
 * no OpenAI counterpart and survive only there.
 */
export { TranslationError, DEFAULT_MAX_TOKENS, openAiRequestToAnthropic, anthropicRequestToOpenAi } from './translate-request';
export { UnreadableAnswerError, anthropicResponseToOpenAi, openAiResponseToAnthropic, errorToOpenAi, errorToAnthropic } from './translate-response';
export { AnthropicStreamToOpenAi, OpenAiStreamToAnthropic } from './translate-stream';
