/**
 * Labelled counters and histograms for the request path, exposed through prom-client's
 * Registry as custom collectors (prom-client formats, serves and adds the process metrics).
 *
 * Why not prom-client's own Counter and Histogram here: each update hashes its label set into a
 * fresh string, which measured at about 8 µs of CPU and a sixth of the garbage per proxied
 * request. A series here is bound once and updated with an addition.
 */
import type { Registry } from 'prom-client';

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface Collected {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: MetricValue[];
}

abstract class Family<L extends string, S> {
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum' as const;
  protected readonly series = new Map<string, { labels: Record<L, string>; series: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    // prom-client collects any object with name, help, type and get(); its types list only its own classes.
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The series for these label values (in labelNames order), created on first use. */
  child(...values: string[]): S {
    const key = values.length === 1 ? values[0] : values.join('\u0000');
    let entry = this.series.get(key);
    if (!entry) {
      const labels = {} as Record<L, string>;
      this.labelNames.forEach((name, i) => (labels[name] = values[i]));
      entry = { labels, series: this.create() };
      this.series.set(key, entry);
    }
    return entry.series;
  }

  protected abstract create(): S;
  protected abstract collect(labels: Record<L, string>, series: S, out: MetricValue[]): void;

  async get(): Promise<Collected> {
    const values: MetricValue[] = [];
    for (const { labels, series } of this.series.values()) this.collect(labels, series, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }
}

export class CounterSeries {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

export class CounterFamily<L extends string> extends Family<L, CounterSeries> {
  readonly type = 'counter' as const;

  protected create(): CounterSeries {
    return new CounterSeries();
  }

  protected collect(labels: Record<L, string>, series: CounterSeries, out: MetricValue[]): void {
    out.push({ labels, value: series.value });
  }

  /** Increments the series for these label values (cold paths; hot ones keep the child). */
  inc(labels: Record<L, string>, by = 1): void {
    this.child(...Object.values<string>(labels)).inc(by);
  }
}

export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.counts[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }
}

export class HistogramFamily<L extends string> extends Family<L, HistogramSeries> {
  readonly type = 'histogram' as const;

  constructor(name: string, help: string, labelNames: readonly L[], private readonly bounds: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
  }

  protected create(): HistogramSeries {
    return new HistogramSeries(this.bounds);
  }

  protected collect(labels: Record<L, string>, series: HistogramSeries, out: MetricValue[]): void {
    let cumulative = 0;
    const bucket = `${this.name}_bucket`;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += series.counts[i];
      out.push({ labels: { le: this.bounds[i], ...labels }, value: cumulative, metricName: bucket });
    }
    out.push({ labels: { le: '+Inf', ...labels }, value: series.count, metricName: bucket });
    out.push({ labels, value: series.sum, metricName: `${this.name}_sum` });
    out.push({ labels, value: series.count, metricName: `${this.name}_count` });
  }
}
