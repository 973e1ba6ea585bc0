/**
 * Cutting a byte stream into reads the way TCP may deliver it, for property tests.
 */
import fc from 'fast-check';

/** How a byte stream is cut into reads: at arbitrary positions, or in pieces of a fixed small size. */
export type Split = { at: number[] } | { every: number };

export function splitAt(bytes: Buffer, split: Split | number[]): Buffer[] {
  if (!Array.isArray(split) && 'every' in split) {
    const pieces: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += split.every) pieces.push(bytes.subarray(at, at + split.every));
    return pieces;
  }
  const positions = Array.isArray(split) ? split : split.at;
  const cuts = [...new Set(positions.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    if (cut > from) pieces.push(bytes.subarray(from, cut));
    from = Math.max(from, cut);
  }
  if (from < bytes.length) pieces.push(bytes.subarray(from));
  return pieces;
}

/** Arbitrary splits: up to `maxCuts` cut positions, or fixed pieces of 1 to 9 bytes. */
export function splits(maxCuts: number): fc.Arbitrary<Split> {
  return fc.oneof(fc.record({ at: fc.array(fc.nat(), { maxLength: maxCuts }) }), fc.record({ every: fc.integer({ min: 1, max: 9 }) }));
}
