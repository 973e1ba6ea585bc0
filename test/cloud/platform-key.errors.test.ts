/** PlatformKey's bad input. */
import { platform } from '../../examples/platform';
import { PlatformKey, platformNames } from '../../lib/cloud';
import { awsStack } from './helpers';

describe('PlatformKey errors', () => {
  test.each([0, 6, 31, 7.5])('a deletion window of %p days', (days) => {
    expect(() => new PlatformKey(awsStack(), 'Key', { names: platformNames(platform), deletionWindowDays: days })).toThrow(
      `PlatformKey: 'deletionWindowDays' (${days}) must be a whole number of days from 7 to 30 (KMS limits).`,
    );
  });
});
