/**
 * Overview: the current numbers as cards and uPlot charts of the last five minutes, fed by
 * the server-sent stream /api/v1/stream/overview (one `sample` a second); the cluster's
 * nodes when clustered. Owns: the sample buffer and the EventSource's life (closed when
 * the page is left). Must not: poll the samples (the stream pushes them).
 */
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { get, openStream, type StreamState } from '../api';
import { ErrorLine, PageTitle, ScrollBox, useLoad, when } from '../ui';

interface Sample {
  t: number;
  connections: number;
  sessions: number;
  subscriptions: number;
  messagesInPerSec: number;
  messagesOutPerSec: number;
  dropsPerSec: number;
  authFailuresPerSec: number;
  refusalsPerSec: number;
  alertsActive: number;
}

interface OverviewInfo {
  /** null: a single broker, not in a cluster. */
  node: string | null;
  version: string;
  startedAt: string;
  cluster: null | { nodes: Array<{ id: string; self?: boolean; connected?: number } & Record<string, unknown>> };
  sample?: Sample | null;
}

const WINDOW_MS = 5 * 60 * 1000;

type Key = Exclude<keyof Sample, 't'>;

const CHARTS: Array<{ id: string; title: string; series: Array<[Key, string, string]> }> = [
  { id: 'connections', title: 'Connections', series: [['connections', 'Connections', '#0a52c4']] },
  {
    id: 'messages',
    title: 'Messages per second',
    series: [
      ['messagesInPerSec', 'In', '#0a52c4'],
      ['messagesOutPerSec', 'Out', '#17662e'],
    ],
  },
  {
    id: 'problems',
    title: 'Drops, auth failures, refusals per second',
    series: [
      ['dropsPerSec', 'Drops', '#a4221a'],
      ['authFailuresPerSec', 'Auth failures', '#7a4d00'],
      ['refusalsPerSec', 'Refusals', '#6b2fa3'],
    ],
  },
  { id: 'alerts', title: 'Alerts active', series: [['alertsActive', 'Alerts active', '#a4221a']] },
];

const CARDS: Array<[Key, string]> = [
  ['connections', 'Connections'],
  ['sessions', 'Sessions'],
  ['subscriptions', 'Subscriptions'],
  ['messagesInPerSec', 'Messages in /s'],
  ['messagesOutPerSec', 'Messages out /s'],
  ['dropsPerSec', 'Drops /s'],
  ['authFailuresPerSec', 'Auth failures /s'],
  ['refusalsPerSec', 'Refusals /s'],
  ['alertsActive', 'Alerts active'],
];

function fmt(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** One uPlot chart; its container carries the accessible name, the numbers are in the cards. */
function Chart({ title, series, samples, version }: { title: string; series: Array<[Key, string, string]>; samples: Sample[]; version: number }): JSX.Element {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  const data = (): uPlot.AlignedData => [samples.map((s) => s.t / 1000), ...series.map(([k]) => samples.map((s) => s[k]))];

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 180,
      legend: { show: false },
      cursor: { show: true, drag: { x: false, y: false } },
      scales: {
        // A steady five-minute window ending at the newest sample, not one that stretches to fit.
        x: { time: true, range: (_u, _min, max) => [max - WINDOW_MS / 1000, max] },
        y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
      },
      series: [{}, ...series.map(([, label, color]) => ({ label, stroke: color, width: 2 }))],
      axes: [
        // Clock times only (hh:mm): uPlot's default two-line date labels collide at this width.
        { stroke: '#1b1b1f', space: 70, values: (_u, splits) => splits.map((v) => new Date(v * 1000).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })) },
        { stroke: '#1b1b1f', size: 50 },
      ],
    };
    const u = new uPlot(opts, data(), el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(data());
  }, [version]);

  const last = samples[samples.length - 1];
  const now = series.map(([k, label]) => `${label} ${fmt(last?.[k])}`).join(', ');
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div class="plot" ref={box} role="img" aria-label={`${title} over the last 5 minutes; now: ${now}`} />
      <p class="muted">
        {series.map(([k, label, color], i) => (
          <span key={k}>
            {i > 0 && ' · '}
            <span aria-hidden="true" class="swatch" style={{ color }}>
              ■
            </span>{' '}
            {label}: <strong>{fmt(last?.[k])}</strong>
          </span>
        ))}
      </p>
    </figure>
  );
}

export function Overview(): JSX.Element {
  const info = useLoad(() => get<OverviewInfo>('/api/v1/overview'), []);
  const samples = useRef<Sample[]>([]);
  const [version, setVersion] = useState(0);
  const [live, setLive] = useState<StreamState>('connecting');

  const add = (s: Sample): void => {
    const buf = samples.current;
    // In time order whatever order they come in (a replayed history, the first GET's sample); one per instant.
    let i = buf.length;
    while (i > 0 && buf[i - 1]!.t > s.t) i--;
    if (i > 0 && buf[i - 1]!.t === s.t) return;
    buf.splice(i, 0, s);
    const newest = buf[buf.length - 1]!.t;
    const cutoff = newest - WINDOW_MS;
    while (buf.length > 0 && buf[0]!.t < cutoff) buf.shift();
    setVersion((v) => v + 1);
  };

  useEffect(() => {
    if (info.data?.sample !== undefined && info.data.sample !== null) add(info.data.sample);
  }, [info.data]);

  useEffect(() => {
    return openStream('/api/v1/stream/overview', 'sample', (data) => add(data as Sample), setLive);
  }, []);

  // The cluster's per-node counts change slowly: read them again every 15 s.
  useEffect(() => {
    const timer = setInterval(() => info.reload(), 15000);
    return () => clearInterval(timer);
  }, []);

  const list = samples.current;
  const last = list[list.length - 1];
  const d = info.data;
  return (
    <>
      <PageTitle>Overview</PageTitle>
      <ErrorLine error={info.error} />
      {d !== null && (
        <p class="muted" data-testid="node-info">
          {d.node === null || d.node === '' ? 'Single node' : (
            <>
              Node <strong>{d.node}</strong>
            </>
          )}
          , version {d.version}, running since {when(d.startedAt)}
        </p>
      )}
      <p role="status" class="muted" data-testid="live-state">
        {live === 'live' ? 'Live: one sample a second.' : live === 'connecting' ? 'Connecting to the live stream…' : 'Live updates interrupted; retrying…'}
      </p>
      <section aria-labelledby="now-h">
        <h2 id="now-h">Now</h2>
        <div class="cards">
          {CARDS.map(([k, label]) => (
            <div class="card" key={k} data-testid={`card-${k}`}>
              <span class="label">{label}</span>
              <span class="value">{fmt(last?.[k])}</span>
            </div>
          ))}
        </div>
      </section>
      <section aria-labelledby="charts-h">
        <h2 id="charts-h">Last 5 minutes</h2>
        <div class="charts">
          {CHARTS.map((c) => (
            <Chart key={c.id} title={c.title} series={c.series} samples={list} version={version} />
          ))}
        </div>
      </section>
      {d?.cluster != null && (
        <section aria-labelledby="cluster-h">
          <h2 id="cluster-h">Cluster nodes</h2>
          <ScrollBox label="Cluster nodes">
            <table aria-label="Cluster nodes">
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">This node</th>
                  <th scope="col">Connected clients</th>
                </tr>
              </thead>
              <tbody>
                {d.cluster.nodes.map((n) => (
                  <tr key={n.id}>
                    <td>{n.id}</td>
                    <td>{n.self === true ? 'yes' : 'no'}</td>
                    <td>{n.connected ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </ScrollBox>
        </section>
      )}
    </>
  );
}
