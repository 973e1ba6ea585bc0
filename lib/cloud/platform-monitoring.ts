/**
 * PlatformMonitoring: one CloudWatch dashboard for the platform's queues and Redis, and alarms on
 * what needs a person (a backlog, stuck or dead-lettered jobs, Redis under pressure) to an
 * encrypted SNS topic. Metric names and dimensions come from the spec, so the dashboard is plain
 * JSON known before apply.
 */
import { CloudwatchDashboard } from '@cdktf/provider-aws/lib/cloudwatch-dashboard';
import { CloudwatchMetricAlarm, type CloudwatchMetricAlarmConfig } from '@cdktf/provider-aws/lib/cloudwatch-metric-alarm';
import { SnsTopic } from '@cdktf/provider-aws/lib/sns-topic';
import { SnsTopicSubscription } from '@cdktf/provider-aws/lib/sns-topic-subscription';
import { Construct } from 'constructs';
import type { PlatformNames } from '../spec/platform';
import { pascalCase } from './construct-ids';
import type { PlatformKey } from './platform-key';

/** When the alarms fire. */
export interface AlarmThresholds {
  /**
   * Age of a queue's oldest message, in seconds: jobs are waiting too long.
   * @default 900
   */
  readonly queueAgeSeconds?: number;
  /**
   * Messages waiting in a queue: the workers do not keep up.
   * @default 1000
   */
  readonly queueDepth?: number;
  /**
   * Redis engine CPU, percent, per node.
   * @default 80
   */
  readonly redisCpuPercent?: number;
  /**
   * Redis memory used of the node's maxmemory, percent: evictions start at 100.
   * @default 80
   */
  readonly redisMemoryPercent?: number;
}

export interface PlatformMonitoringProps {
  /** The platform's names (queue and Redis node names). */
  readonly names: PlatformNames;
  /** Encrypts the alarm topic. */
  readonly key: PlatformKey;
  /** Nodes of the Redis replication group. */
  readonly redisNodeCount: number;
  /**
   * Email addresses subscribed to the alarm topic (each confirms by mail).
   * @default - none: subscribe your paging tool to the topic
   */
  readonly alarmEmails?: string[];
  /**
   * Alarm thresholds.
   * @default - the defaults of each field
   */
  readonly thresholds?: AlarmThresholds;
  /**
   * Tags on the topic and the alarms.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

const PERIOD = 300;

export class PlatformMonitoring extends Construct {
  /** The dashboard (the construct's default child). */
  public readonly dashboard: CloudwatchDashboard;
  /** Every alarm notifies (and clears) here. */
  public readonly alarmTopic: SnsTopic;
  public readonly alarms: CloudwatchMetricAlarm[] = [];

  constructor(scope: Construct, id: string, props: PlatformMonitoringProps) {
    super(scope, id);
    const { names } = props;
    const t = checkAlarmOptions('PlatformMonitoring', 'thresholds', props.alarmEmails, props.thresholds);
    const emails = props.alarmEmails ?? [];
    if (!Number.isInteger(props.redisNodeCount) || props.redisNodeCount < 1 || props.redisNodeCount > 6) {
      throw new Error(`PlatformMonitoring: 'redisNodeCount' (${props.redisNodeCount}) must be 1 to 6, the nodes of the replication group (AgentRedis.nodeCount).`);
    }

    this.alarmTopic = new SnsTopic(this, 'AlarmTopic', { name: names.alarmTopicName, kmsMasterKeyId: props.key.arn, tags: props.tags });
    emails.forEach((email, i) => new SnsTopicSubscription(this, `AlarmEmail${i}`, { topicArn: this.alarmTopic.arn, protocol: 'email', endpoint: email }));

    const alarm = (id: string, name: string, description: string, metric: AlarmMetric) => {
      this.alarms.push(
        new CloudwatchMetricAlarm(this, id, {
          alarmName: `${names.prefix}-${name}`,
          alarmDescription: description,
          ...metric,
          period: PERIOD,
          alarmActions: [this.alarmTopic.arn],
          okActions: [this.alarmTopic.arn],
          tags: props.tags,
        }),
      );
    };

    for (const queue of names.workerQueues()) {
      const dims = { QueueName: queue.queueName };
      const id = pascalCase(queue.worker);
      alarm(`${id}QueueAge`, `${queue.worker}-queue-age`, `Jobs for ${queue.worker} wait longer than ${t.queueAgeSeconds} s: the worker is down or too slow.`, {
        namespace: 'AWS/SQS', metricName: 'ApproximateAgeOfOldestMessage', dimensions: dims, statistic: 'Maximum',
        comparisonOperator: 'GreaterThanThreshold', threshold: t.queueAgeSeconds, evaluationPeriods: 2, treatMissingData: 'notBreaching',
      });
      alarm(`${id}QueueDepth`, `${queue.worker}-queue-depth`, `More than ${t.queueDepth} jobs wait for ${queue.worker}: scale the worker or check its autoscaler.`, {
        namespace: 'AWS/SQS', metricName: 'ApproximateNumberOfMessagesVisible', dimensions: dims, statistic: 'Maximum',
        comparisonOperator: 'GreaterThanThreshold', threshold: t.queueDepth, evaluationPeriods: 2, treatMissingData: 'notBreaching',
      });
      alarm(`${id}DeadLetters`, `${queue.worker}-dead-letters`, `Jobs of ${queue.worker} failed repeatedly and are in ${queue.deadLetterQueueName}: inspect and redrive them.`, {
        namespace: 'AWS/SQS', metricName: 'ApproximateNumberOfMessagesVisible', dimensions: { QueueName: queue.deadLetterQueueName }, statistic: 'Maximum',
        comparisonOperator: 'GreaterThanThreshold', threshold: 0, evaluationPeriods: 1, treatMissingData: 'notBreaching',
      });
    }

    const nodes = redisNodeIds(names, props.redisNodeCount);
    for (const node of nodes) {
      const dims = { CacheClusterId: node };
      const suffix = node.slice(-3);
      alarm(`RedisCpu${suffix}`, `redis-cpu-${suffix}`, `Redis node ${node} engine CPU above ${t.redisCpuPercent}%: budget checks slow down; size up the node type.`, {
        namespace: 'AWS/ElastiCache', metricName: 'EngineCPUUtilization', dimensions: dims, statistic: 'Average',
        comparisonOperator: 'GreaterThanThreshold', threshold: t.redisCpuPercent, evaluationPeriods: 3, treatMissingData: 'missing',
      });
      alarm(`RedisMemory${suffix}`, `redis-memory-${suffix}`, `Redis node ${node} memory above ${t.redisMemoryPercent}% of maxmemory: evictions come next; size up or shorten cache TTLs.`, {
        namespace: 'AWS/ElastiCache', metricName: 'DatabaseMemoryUsagePercentage', dimensions: dims, statistic: 'Average',
        comparisonOperator: 'GreaterThanThreshold', threshold: t.redisMemoryPercent, evaluationPeriods: 3, treatMissingData: 'missing',
      });
      alarm(`RedisEvictions${suffix}`, `redis-evictions-${suffix}`, `Redis node ${node} evicted keys: budget counters may have been lost (under-enforcement); add memory.`, {
        namespace: 'AWS/ElastiCache', metricName: 'Evictions', dimensions: dims, statistic: 'Sum',
        comparisonOperator: 'GreaterThanThreshold', threshold: 0, evaluationPeriods: 1, treatMissingData: 'notBreaching',
      });
    }

    this.dashboard = new CloudwatchDashboard(this, 'Resource', {
      dashboardName: names.dashboardName,
      dashboardBody: JSON.stringify(dashboardBody(names, nodes)),
    });
  }
}

type AlarmMetric = Pick<
  CloudwatchMetricAlarmConfig,
  'namespace' | 'metricName' | 'dimensions' | 'statistic' | 'comparisonOperator' | 'threshold' | 'evaluationPeriods' | 'treatMissingData'
>;

/** ElastiCache names the nodes of a replication group <id>-001, -002 ... */
function redisNodeIds(names: PlatformNames, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${names.redis.replicationGroupId}-${String(i + 1).padStart(3, '0')}`);
}

/** Checks the emails and thresholds (`thresholdsProp` is how the caller names the thresholds) and fills the defaults. */
export function checkAlarmOptions(owner: string, thresholdsProp: string, emails: string[] = [], thresholds: AlarmThresholds = {}): Required<AlarmThresholds> {
  emails.forEach((email, i) => {
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) throw new Error(`${owner}: 'alarmEmails[${i}]' ('${email}') is not an email address.`);
  });
  const resolved = { queueAgeSeconds: 900, queueDepth: 1000, redisCpuPercent: 80, redisMemoryPercent: 80, ...thresholds };
  for (const [field, value] of Object.entries(resolved)) {
    const max = field.endsWith('Percent') ? 100 : Number.MAX_SAFE_INTEGER;
    if (typeof value !== 'number' || !(value > 0) || value > max) {
      throw new Error(`${owner}: '${thresholdsProp}.${field}' (${value}) must be a number above 0${max === 100 ? ' and at most 100' : ''}.`);
    }
  }
  return resolved;
}

type MetricLine = (string | Record<string, string>)[];

function dashboardBody(names: PlatformNames, nodes: string[]): { widgets: unknown[] } {
  const widgets: unknown[] = [];
  const width = 8;
  const add = (title: string, stat: string, metrics: MetricLine[]) =>
    widgets.push({
      type: 'metric',
      x: (widgets.length % 3) * width,
      y: Math.floor(widgets.length / 3) * 6,
      width,
      height: 6,
      properties: { title, region: names.region, view: 'timeSeries', stacked: false, stat, period: PERIOD, metrics },
    });
  const queues = names.workerQueues();
  if (queues.length) {
    add('Queue depth (messages waiting)', 'Maximum', queues.map((q) => ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', q.queueName, { label: q.worker }]));
    add('Age of oldest message (s)', 'Maximum', queues.map((q) => ['AWS/SQS', 'ApproximateAgeOfOldestMessage', 'QueueName', q.queueName, { label: q.worker }]));
    add('Dead-letter queue depth', 'Maximum', queues.map((q) => ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', q.deadLetterQueueName, { label: q.deadLetterQueueName }]));
  }
  const perNode = (metric: string) => nodes.map((node) => ['AWS/ElastiCache', metric, 'CacheClusterId', node, { label: node }]);
  add('Redis engine CPU (%)', 'Average', perNode('EngineCPUUtilization'));
  add('Redis memory used (% of maxmemory)', 'Average', perNode('DatabaseMemoryUsagePercentage'));
  add('Redis evictions', 'Sum', perNode('Evictions'));
  add('Redis connections', 'Maximum', perNode('CurrConnections'));
  return { widgets };
}
