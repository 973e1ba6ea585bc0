/**
 * Two fake providers of the same API shape, primary and secondary, for failover and timeout
 * suites: started once per file, reset before every test, each answering with its own text.
 */
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from './fake-llm';

export const PRIMARY_TEXT = 'Answered by the primary.';
export const SECONDARY_TEXT = 'Answered by the secondary.';

export type ProviderConfigInput = SidecarConfigInput['providers'][number];

/** Registers the jest hooks; the returned object holds the running fakes. */
export function useProviderPair(): { primary: FakeLlm; secondary: FakeLlm } {
  const pair = {} as { primary: FakeLlm; secondary: FakeLlm };
  beforeAll(async () => {
    [pair.primary, pair.secondary] = await Promise.all([FakeLlm.start(), FakeLlm.start()]);
  });
  afterAll(async () => {
    await Promise.all([pair.primary?.close(), pair.secondary?.close()]);
  });
  beforeEach(() => {
    pair.primary.reset();
    pair.secondary.reset();
    pair.primary.defaultStep = { text: PRIMARY_TEXT };
    pair.secondary.defaultStep = { text: SECONDARY_TEXT };
  });
  return pair;
}

export function openaiProvider(name: string, baseUrl: string): ProviderConfigInput {
  return { name, type: 'openai', baseUrl };
}
