/** ServiceAccountRole's bad input: the role binds exactly one ServiceAccount and allows only named actions. */
import { platform } from '../../examples/platform';
import { platformNames, ServiceAccountRole, type ServiceAccountRoleProps } from '../../lib/cloud';
import { awsStack } from './helpers';

const names = platformNames(platform);
const props = (overrides: Partial<ServiceAccountRoleProps> = {}): ServiceAccountRoleProps => ({
  roleName: 'acme-agents-support-chat',
  oidcProviderArn: names.oidcProviderArn,
  oidcIssuer: names.oidcIssuer,
  namespace: 'agents',
  serviceAccount: 'support-chat',
  ...overrides,
});
const build = (overrides: Partial<ServiceAccountRoleProps>) => () => new ServiceAccountRole(awsStack(), 'Role', props(overrides));

describe('ServiceAccountRole errors', () => {
  test.each<[string, () => unknown, string]>([
    ['a role name IAM refuses', build({ roleName: 'support chat' }), "ServiceAccountRole 'support chat': 'roleName' must be 1-64 letters, digits and +=,.@_- (IAM's rule)."],
    ['no ServiceAccount', build({ serviceAccount: '' }), "'namespace' and 'serviceAccount' are required: the trust policy binds the role to exactly one ServiceAccount."],
    ['the issuer with https://', build({ oidcIssuer: 'https://oidc.eks.eu-central-1.amazonaws.com/id/X' }), "'oidcIssuer' ('https://oidc.eks.eu-central-1.amazonaws.com/id/X') must be given without https://"],
    ['a wildcard action', build({ statements: [{ sid: 'All', actions: ['*'], resources: ['*'] }] }), "statement 'All' allows '*': wildcard actions are not allowed (least privilege)"],
    ['a statement without actions', build({ statements: [{ sid: 'Nothing', actions: [], resources: ['*'] }] }), "statement 'Nothing' has no actions; list the actions it allows."],
    ['a statement without resources', build({ statements: [{ sid: 'Nowhere', actions: ['sqs:SendMessage'], resources: [] }] }), "statement 'Nowhere' has no resources"],
    ['a statement id IAM refuses', build({ statements: [{ sid: 'send-jobs', actions: ['sqs:SendMessage'], resources: ['*'] }] }), "statement id 'send-jobs' must be letters and digits only"],
    [
      'two statements with one id',
      build({ statements: [{ sid: 'Send', actions: ['sqs:SendMessage'], resources: ['*'] }, { sid: 'Send', actions: ['sqs:GetQueueUrl'], resources: ['*'] }] }),
      "a statement 'Send' exists already; give each statement its own sid.",
    ],
  ])('%s', (_, construct, message) => {
    expect(construct).toThrow(message);
  });
});
