/**
 * Grafana dashboard JSON (schemaVersion 39), built from a few typed pieces: rows of panels laid out
 * two per line, each panel on the `datasource` variable. The output depends only on the input, so
 * a synth gives the same bytes every time (small GitOps diffs).
 */

/** Grafana's dashboard schema version the JSON is written in (Grafana 10.4 / 11). */
export const DASHBOARD_SCHEMA_VERSION = 39;

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** One query of a panel. */
export interface PanelQuery {
  readonly expr: string;
  /** Grafana legend template: `{{agent}} {{model}}`. */
  readonly legend: string;
}

export enum PanelKind {
  TIMESERIES = 'timeseries',
  /** The current value per series, as horizontal bars. */
  BAR_GAUGE = 'bargauge',
}

/** A panel before layout. */
export interface PanelSpec {
  readonly title: string;
  readonly description: string;
  /** Grafana unit id: `short`, `s`, `percentunit`, `currencyUSD`, `bytes`, `reqps`. */
  readonly unit: string;
  readonly queries: readonly PanelQuery[];
  /** @default PanelKind.TIMESERIES */
  readonly kind?: PanelKind;
  /** Fixed axis bounds. */
  readonly min?: number;
  readonly max?: number;
  /** Colour steps: [value, colour] from the lowest (green from the start). */
  readonly thresholds?: readonly (readonly [number, string])[];
  /** Stack the series (parts of a whole). */
  readonly stacked?: boolean;
}

export interface RowSpec {
  readonly title: string;
  readonly panels: readonly PanelSpec[];
}

/** A template variable listing a label's values (`label_values(metric{...}, label)`), multi-select with All. */
export interface LabelVariable {
  readonly name: string;
  readonly label: string;
  /** The series to read the values from: `llm_tokens_total{agent=~"$agent"}`. */
  readonly selector: string;
  readonly labelName: string;
}

export interface DashboardSpec {
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly tags: readonly string[];
  readonly variables: readonly LabelVariable[];
  readonly rows: readonly RowSpec[];
}

const PANEL_HEIGHT = 8;
const PANEL_WIDTH = 12;

/** The dashboard JSON, as Grafana's dashboard sidecar and provisioning read it. */
export function dashboardJson(spec: DashboardSpec): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({ collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, id: id++, panels: [], title: row.title, type: 'row' });
    y += 1;
    row.panels.forEach((panel, i) => {
      const x = (i % 2) * PANEL_WIDTH;
      const width = i === row.panels.length - 1 && i % 2 === 0 ? 24 : PANEL_WIDTH;
      panels.push(panelJson(panel, id++, { h: PANEL_HEIGHT, w: width, x, y }));
      if (i % 2 === 1 || width === 24) y += PANEL_HEIGHT;
    });
  }
  return {
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    description: spec.description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: [],
    panels,
    refresh: '1m',
    schemaVersion: DASHBOARD_SCHEMA_VERSION,
    tags: [...spec.tags],
    templating: { list: [datasourceVariable(), ...spec.variables.map(labelVariableJson)] },
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    title: spec.title,
    uid: spec.uid,
    version: 1,
    weekStart: '',
  };
}

function datasourceVariable(): Record<string, unknown> {
  return { current: {}, hide: 0, includeAll: false, label: 'Data source', multi: false, name: 'datasource', options: [], query: 'prometheus', refresh: 1, regex: '', type: 'datasource' };
}

function labelVariableJson(v: LabelVariable): Record<string, unknown> {
  const query = `label_values(${v.selector}, ${v.labelName})`;
  return {
    allValue: '.*',
    current: {},
    datasource: DATASOURCE,
    definition: query,
    hide: 0,
    includeAll: true,
    label: v.label,
    multi: true,
    name: v.name,
    options: [],
    // A query string: every Grafana version reads it (the editor's object form differs between versions).
    query,
    refresh: 2,
    regex: '',
    sort: 1,
    type: 'query',
  };
}

function panelJson(p: PanelSpec, id: number, gridPos: Record<string, number>): Record<string, unknown> {
  const steps = [{ color: 'green', value: null }, ...(p.thresholds ?? []).map(([value, color]) => ({ color, value }))];
  const defaults: Record<string, unknown> = {
    color: { mode: p.thresholds ? 'thresholds' : 'palette-classic' },
    thresholds: { mode: 'absolute', steps },
    unit: p.unit,
  };
  if (p.min !== undefined) defaults.min = p.min;
  if (p.max !== undefined) defaults.max = p.max;
  const kind = p.kind ?? PanelKind.TIMESERIES;
  if (kind === PanelKind.TIMESERIES) {
    defaults.custom = {
      drawStyle: 'line',
      fillOpacity: p.stacked ? 30 : 10,
      lineWidth: 1,
      showPoints: 'never',
      spanNulls: false,
      stacking: { group: 'A', mode: p.stacked ? 'normal' : 'none' },
    };
  }
  const options =
    kind === PanelKind.TIMESERIES
      ? {
          legend: { calcs: ['mean', 'max'], displayMode: 'table', placement: 'bottom', showLegend: true },
          tooltip: { mode: 'multi', sort: 'desc' },
        }
      : {
          displayMode: 'gradient',
          minVizHeight: 16,
          orientation: 'horizontal',
          reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
          showUnfilled: true,
          valueMode: 'color',
        };
  return {
    datasource: DATASOURCE,
    description: p.description,
    fieldConfig: { defaults, overrides: [] },
    gridPos,
    id,
    options,
    targets: p.queries.map((q, i) => ({
      datasource: DATASOURCE,
      editorMode: 'code',
      expr: q.expr,
      instant: kind === PanelKind.BAR_GAUGE,
      legendFormat: q.legend,
      range: kind === PanelKind.TIMESERIES,
      refId: String.fromCharCode(65 + i),
    })),
    title: p.title,
    type: kind,
  };
}
