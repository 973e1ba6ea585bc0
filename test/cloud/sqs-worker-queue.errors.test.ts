/** SqsWorkerQueue's bad input: a queue exists only for a worker the spec gives one. */
import { platform } from '../../examples/platform';
import { PlatformKey, platformNames, SqsWorkerQueue } from '../../lib/cloud';
import { awsStack } from './helpers';

describe('SqsWorkerQueue errors', () => {
  test('a worker without a queue in the spec', () => {
    const names = platformNames(platform);
    const stack = awsStack();
    expect(() => new SqsWorkerQueue(stack, 'Queue', { names, worker: 'support-chat', key: new PlatformKey(stack, 'Key', { names }) })).toThrow(
      "'support-chat' has no queue in the platform spec 'acme-agents'; add { worker: 'support-chat' } to 'workerQueues' (workers with queues: research-worker).",
    );
  });
});
