/**
 * AgentDashboards output: ConfigMaps the Grafana sidecar loads (label grafana_dashboard: "1",
 * folder annotation), holding dashboard JSON in schema 39 with a datasource variable, agent and
 * model variables, the panels the platform needs, a laid-out grid and a uid derived from the
 * name; the same bytes on every synth.
 */
import { AgentDashboards, dashboardUid, DASHBOARD_KEYS } from '../../lib';
import { validateManifests } from '../support/k8s-validate';
import { chart, find, findAll, synth, type Json } from './helpers';

function dashboards(props: ConstructorParameters<typeof AgentDashboards>[2] = {}) {
  const c = chart();
  const d = new AgentDashboards(c, 'Dashboards', { name: 'cdk-agents', folder: 'AI agents', ...props });
  const objects = synth(c);
  const json = (key: string): Json => {
    const cm = find(objects, 'ConfigMap', `cdk-agents-${key}`);
    return JSON.parse(cm.data[`cdk-agents-${key}.json`]);
  };
  return { c, d, objects, usage: json('usage'), traffic: json('traffic') };
}

const titles = (d: Json): string[] => d.panels.filter((p: Json) => p.type !== 'row').map((p: Json) => p.title);

describe('AgentDashboards', () => {
  test('snapshot of the dashboard JSON', () => {
    const { usage, traffic } = dashboards();
    expect({ usage, traffic }).toMatchSnapshot();
  });

  test('ConfigMaps labelled for the Grafana sidecar, in the chosen folder, valid objects', () => {
    const { objects, d } = dashboards();
    const maps = findAll(objects, 'ConfigMap');
    expect(maps.map((m) => m.metadata.name)).toEqual(['cdk-agents-usage', 'cdk-agents-traffic']);
    for (const m of maps) {
      expect(m.metadata.labels.grafana_dashboard).toBe('1');
      expect(m.metadata.annotations).toEqual({ grafana_folder: 'AI agents' });
      expect(m.metadata.namespace).toBe('agents');
      expect(Object.keys(m.data)).toEqual([`${m.metadata.name}.json`]);
    }
    expect(validateManifests(objects)).toEqual([]);
    expect(d.node.defaultChild).toBe(d.usageDashboard);
  });

  test('custom sidecar label and folder annotation; no folder, no annotation', () => {
    const custom = dashboards({ labels: { 'grafana.com/dashboard': 'agents' }, folderAnnotation: 'k8s-sidecar-target-directory', folder: '/tmp/dashboards/agents' });
    const cm = find(custom.objects, 'ConfigMap', 'cdk-agents-usage');
    expect(cm.metadata.labels['grafana.com/dashboard']).toBe('agents');
    expect(cm.metadata.labels.grafana_dashboard).toBeUndefined();
    expect(cm.metadata.annotations).toEqual({ 'k8s-sidecar-target-directory': '/tmp/dashboards/agents' });
    const plain = dashboards({ folder: undefined });
    expect(find(plain.objects, 'ConfigMap', 'cdk-agents-usage').metadata.annotations).toBeUndefined();
  });

  test('schema 39, uid derived from the name, a datasource variable and agent/model variables', () => {
    const { usage, traffic } = dashboards();
    for (const [d, key] of [
      [usage, 'usage'],
      [traffic, 'traffic'],
    ] as const) {
      expect(d.schemaVersion).toBe(39);
      expect(d.uid).toBe(`cdk-agents-${key}`);
      expect(d.id).toBeNull();
      const vars = d.templating.list;
      expect(vars.map((v: Json) => [v.name, v.type])).toEqual([
        ['datasource', 'datasource'],
        ['agent', 'query'],
        ['model', 'query'],
      ]);
      expect(vars[0].query).toBe('prometheus');
      expect(vars[1]).toMatchObject({ multi: true, includeAll: true, allValue: '.*', query: 'label_values(llm_tokens_total, agent)', refresh: 2 });
      expect(vars[2].query).toBe('label_values(llm_tokens_total{agent=~"$agent"}, model)');
      for (const p of d.panels.filter((p: Json) => p.type !== 'row')) {
        expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
        for (const t of p.targets) expect(t.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      }
    }
    expect(DASHBOARD_KEYS).toEqual(['usage', 'traffic']);
  });

  test('the panels the issue asks for are there', () => {
    const { usage, traffic } = dashboards();
    const all = [...titles(usage), ...titles(traffic)].join('\n');
    for (const wanted of [
      /Tokens per second by agent and model/,
      /Cost per hour \(USD\) by agent and model/,
      /Budget burn/,
      /Tool call success rate/,
      /Loop iterations/,
      /Guardrail decisions/,
      /Request latency p50 \/ p99/,
      /Time to first token p50 \/ p99/,
      /Failovers/,
      /cache hit ratio/,
    ]) {
      expect(all).toMatch(wanted);
    }
    const latency = traffic.panels.find((p: Json) => p.title.startsWith('Request latency'));
    expect(latency.targets.map((t: Json) => t.expr.slice(0, 24))).toEqual(['histogram_quantile(0.5, ', 'histogram_quantile(0.99,']);
  });

  test('per-agent usage counts each call once: from the sidecars, not again from the gateway', () => {
    const { usage } = dashboards();
    const tokens = usage.panels.find((p: Json) => p.title.startsWith('Tokens per second'));
    expect(tokens.targets[0].expr).toBe(
      'sum by (agent, model) (rate(llm_tokens_total{agent=~"$agent", model=~"$model"}[$__rate_interval]) * on (job, instance) group_left cdk_agents_runtime_info{mode="sidecar"})',
    );
  });

  test('the grid is laid out: rows full width, panels side by side, no overlap, top to bottom', () => {
    const { usage, traffic } = dashboards();
    for (const d of [usage, traffic]) {
      const cells = new Set<string>();
      let lastY = -1;
      for (const p of d.panels) {
        const { x, y, w, h } = p.gridPos;
        expect(x + w).toBeLessThanOrEqual(24);
        expect(y).toBeGreaterThanOrEqual(lastY);
        lastY = y;
        if (p.type === 'row') expect(w).toBe(24);
        for (let i = x; i < x + w; i++) {
          for (let j = y; j < y + h; j++) {
            const cell = `${i},${j}`;
            expect(cells.has(cell)).toBe(false);
            cells.add(cell);
          }
        }
      }
      const ids = d.panels.map((p: Json) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  test('deterministic: two synths give the same bytes', () => {
    const a = find(dashboards().objects, 'ConfigMap', 'cdk-agents-usage').data;
    const b = find(dashboards().objects, 'ConfigMap', 'cdk-agents-usage').data;
    expect(b).toEqual(a);
  });

  test('uids stay within Grafana\'s 40 characters, stable for a long name', () => {
    expect(dashboardUid('cdk-agents', 'traffic')).toBe('cdk-agents-traffic');
    const long = dashboardUid('customer-care-platform-production-eu-west', 'traffic');
    expect(long.length).toBeLessThanOrEqual(40);
    expect(long).toBe(dashboardUid('customer-care-platform-production-eu-west', 'traffic'));
    expect(long).not.toBe(dashboardUid('customer-care-platform-production-eu-west', 'usage'));
  });

  describe('errors', () => {
    test('an empty label set would never be found by the sidecar', () => {
      expect(() => dashboards({ labels: {} })).toThrow("AgentDashboards 'cdk-agents': 'labels' is empty: the Grafana sidecar finds dashboards by label. Leave it out for { grafana_dashboard: '1' }.");
    });

    test('a folder annotation without a folder', () => {
      expect(() => dashboards({ folder: undefined, folderAnnotation: 'grafana_folder' })).toThrow(/'folderAnnotation' is set without 'folder'/);
    });

    test('an invalid label value', () => {
      expect(() => dashboards({ labels: { grafana_dashboard: 'yes please' } })).toThrow(/'labels\.grafana_dashboard' \('yes please'\) is not a valid label value/);
    });
  });
});
