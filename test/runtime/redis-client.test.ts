/**
 * The runtime's Redis client against a real redis-server: a command slower than
 * commandTimeoutMs fails (and the connection is replaced), but a reply that arrived while the
 * process itself was stalled (a long GC, CPU throttling of the pod) is read, not taken for a
 * timeout: the watchdog decides only after the I/O of the stall has been read.
 */
import { RedisClient, RedisUnavailableError } from '../../lib/runtime/store/redis-client';
import { RedisServer } from '../support/redis';

let redis: RedisServer;
let client: RedisClient;
const TIMEOUT_MS = 100;

beforeAll(async () => {
  redis = await RedisServer.start();
  client = new RedisClient({ host: '127.0.0.1', port: redis.port, db: 0, commandTimeoutMs: TIMEOUT_MS });
  expect(await client.waitUntilUp(5_000)).toBe(true);
});

afterAll(async () => {
  client?.close();
  await redis?.stop();
});

/** Blocks the event loop, as a long GC pause or a throttled CPU would. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

test('a reply that arrived while the process was stalled past commandTimeoutMs is read, not a timeout', async () => {
  for (let i = 0; i < 5; i++) {
    const reply = client.call(['PING']);
    // The process is busy long past the timeout (outside the timers phase, as when handling
    // I/O): the reply arrives meanwhile, and the watchdog's timer is due before it is read.
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        stall(TIMEOUT_MS * 3);
        resolve();
      }),
    );
    await expect(reply).resolves.toBe('PONG');
    expect(client.isUp).toBe(true);
  }
});

test('a command the server really does not answer within commandTimeoutMs fails, and the client reconnects', async () => {
  const { awake } = await redis.hang(1);
  const started = performance.now();
  await expect(client.call(['PING'])).rejects.toBeInstanceOf(RedisUnavailableError);
  expect(performance.now() - started).toBeLessThan(TIMEOUT_MS * 5 + 500);
  await awake;
  expect(await client.waitUntilUp(5_000)).toBe(true);
  await expect(client.call(['PING'])).resolves.toBe('PONG');
});
