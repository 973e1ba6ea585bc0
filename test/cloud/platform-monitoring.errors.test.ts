/** PlatformMonitoring's bad input: alarm emails and thresholds. */
import { platform } from '../../examples/platform';
import { PlatformKey, PlatformMonitoring, platformNames, type PlatformMonitoringProps } from '../../lib/cloud';
import { awsStack } from './helpers';

const build = (overrides: Partial<PlatformMonitoringProps>) => () => {
  const names = platformNames(platform);
  const stack = awsStack();
  new PlatformMonitoring(stack, 'Monitoring', { names, key: new PlatformKey(stack, 'Key', { names }), redisNodeCount: 2, ...overrides });
};

describe('PlatformMonitoring errors', () => {
  test.each<[string, () => unknown, string]>([
    ['an email that is not one', build({ alarmEmails: ['ops@', 'oncall@acme.example'] }), "PlatformMonitoring: 'alarmEmails[0]' ('ops@') is not an email address."],
    ['a zero queue age', build({ thresholds: { queueAgeSeconds: 0 } }), "PlatformMonitoring: 'thresholds.queueAgeSeconds' (0) must be a number above 0."],
    ['no Redis nodes', build({ redisNodeCount: 0 }), "PlatformMonitoring: 'redisNodeCount' (0) must be 1 to 6"],
    ['memory over 100%', build({ thresholds: { redisMemoryPercent: 101 } }), "PlatformMonitoring: 'thresholds.redisMemoryPercent' (101) must be a number above 0 and at most 100."],
  ])('%s', (_, construct, message) => {
    expect(construct).toThrow(message);
  });
});
