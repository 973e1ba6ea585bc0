/** ProviderKeySecret and ProviderKeyRotation: a declared provider, and rotation or a waiver with a reason. */
import { platform } from '../../examples/platform';
import { PlatformKey, platformNames, ProviderKeyRotation, ProviderKeySecret } from '../../lib/cloud';
import { awsStack } from './helpers';

const names = platformNames(platform);
const waived = () => ProviderKeyRotation.waived('keys are minted by hand in the provider consoles');

describe('ProviderKeySecret errors', () => {
  const secret = (provider: string, recoveryWindowDays?: number) => () => {
    const stack = awsStack();
    new ProviderKeySecret(stack, 'Key', { names, provider, key: new PlatformKey(stack, 'PlatformKey', { names }), rotation: waived(), recoveryWindowDays });
  };

  test('a provider the spec never declares', () => {
    expect(secret('mistral')).toThrow("the secret 'mistral' is referenced but never declared in the platform spec 'acme-agents'; add { name: 'mistral' } to 'providerKeys' (declared: openai, anthropic).");
  });

  test('a recovery window Secrets Manager refuses', () => {
    expect(secret('openai', 3)).toThrow("ProviderKeySecret 'openai': 'recoveryWindowDays' (3) must be a whole number of days from 7 to 30.");
  });
});

describe('ProviderKeyRotation errors', () => {
  test.each<[string, () => unknown, string]>([
    ['a waiver without a reason', () => ProviderKeyRotation.waived(''), 'ProviderKeyRotation.waived: give the reason rotation is waived (at least 10 characters)'],
    ['a waiver with a token reason', () => ProviderKeyRotation.waived('manual'), 'ProviderKeyRotation.waived: give the reason'],
    ['a function ARN that is not one', () => ProviderKeyRotation.withLambda({ functionArn: 'rotate-keys' }), "ProviderKeyRotation.withLambda: 'functionArn' ('rotate-keys') must be a Lambda function ARN"],
    [
      'a rotation period out of range',
      () => ProviderKeyRotation.withLambda({ functionArn: 'arn:aws:lambda:eu-central-1:111122223333:function:rotate', everyDays: 0 }),
      "ProviderKeyRotation.withLambda: 'everyDays' (0) must be a whole number of days from 1 to 1000.",
    ],
  ])('%s', (_, build, message) => {
    expect(build).toThrow(message);
  });
});
