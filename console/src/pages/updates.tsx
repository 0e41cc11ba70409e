/**
 * Updates: the OTA campaigns and, per campaign, how far each stage has gone. The list is
 * read once, then the server-sent stream /api/v1/stream/ota (event `campaigns`, the whole
 * list, sent when it changes) keeps it current. Owns: this page and its EventSource's life
 * (closed when the page is left). Must not: change a campaign (the CLI does), or poll.
 */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, openStream, type StreamState } from '../api';
import { ErrorLine, PageTitle, ScrollBox, text, useLoad, when } from '../ui';

/** One stage's device counts (src/ota/campaigns/progress.ts StageProgress). */
interface StageProgress {
  stage: number;
  percent: number;
  devices: number;
  waiting: number;
  queued: number;
  inProgress: number;
  succeeded: number;
  failed: number;
  timedOut: number;
  rejected: number;
  canceled: number;
}

/** A campaign as the admin API sends it (CampaignRecord plus its progress). */
interface Campaign {
  id: string;
  releaseId: string;
  target: string;
  state: string;
  stage: number;
  stageCounts: number[];
  stagePercents: number[];
  targets: string[];
  createdAt: number;
  endedAt?: number | null;
  reason?: string | null;
  abortRule?: { text: string } | null;
  progress: { stages: StageProgress[]; terminal: number; failed: number };
}

type Live = StreamState;

function stateClass(state: string): string {
  if (state === 'COMPLETED') return 'ok';
  if (state === 'ABORTED') return 'bad';
  if (state === 'PAUSED' || state === 'CANCELED') return 'warn';
  return '';
}

/** Devices of the stage whose latest execution has ended, and those that ended badly (as progress.ts counts). */
function stageDone(s: StageProgress): { done: number; failed: number } {
  const failed = s.failed + s.timedOut + s.rejected;
  return { done: s.succeeded + s.canceled + failed, failed };
}

function StageBars({ c }: { c: Campaign }): JSX.Element {
  const base = `stage-${c.id}`;
  return (
    <ul class="stages" aria-label={`Stages of campaign ${c.id}`}>
      {c.progress.stages.map((s) => {
        const { done, failed } = stageDone(s);
        const label = `Stage ${s.stage} (${s.percent}%): ${done} of ${s.devices} done, ${failed} failed`;
        const labelId = `${base}-${s.stage}`;
        const started = s.stage <= c.stage;
        return (
          <li key={s.stage}>
            <span id={labelId}>{label}</span>
            {!started && <span class="muted"> (not started)</span>}
            <br />
            <progress max={Math.max(s.devices, 1)} value={done} aria-labelledby={labelId} />
            <span class="muted">
              {' '}
              {s.waiting} waiting, {s.queued} queued, {s.inProgress} in progress, {s.succeeded} succeeded, {s.failed} failed, {s.timedOut} timed out, {s.rejected} rejected, {s.canceled} canceled
            </span>
          </li>
        );
      })}
    </ul>
  );
}

function CampaignTable({ list }: { list: Campaign[] }): JSX.Element {
  return (
    <ScrollBox label="Campaigns">
      <table aria-label="Campaigns">
        <thead>
          <tr>
            <th scope="col">Id</th>
            <th scope="col">Release</th>
            <th scope="col">Target</th>
            <th scope="col">State</th>
            <th scope="col">Stage</th>
            <th scope="col">Devices</th>
            <th scope="col">Done</th>
            <th scope="col">Failed</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {list.map((c) => (
            <tr key={c.id}>
              <td class="mono">{c.id}</td>
              <td class="mono">{c.releaseId}</td>
              <td>{c.target}</td>
              <td class={stateClass(c.state)}>{c.state}</td>
              <td>
                {c.stage}/{c.stageCounts.length}
              </td>
              <td>{c.targets.length}</td>
              <td>{c.progress.terminal}</td>
              <td class={c.progress.failed > 0 ? 'bad' : ''}>{c.progress.failed}</td>
              <td>{when(c.createdAt)}</td>
            </tr>
          ))}
          {list.length === 0 && (
            <tr>
              <td colSpan={9} class="muted">
                No campaigns
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </ScrollBox>
  );
}

export function Updates(): JSX.Element {
  const first = useLoad(() => get<{ campaigns: Campaign[] }>('/api/v1/ota/campaigns'), []);
  const [pushed, setPushed] = useState<Campaign[] | null>(null);
  const [live, setLive] = useState<Live>('connecting');
  const off = first.error !== '' && first.status === 501;
  const ready = first.data !== null;

  // The stream opens once the list has been read (a 501 broker has no stream either).
  useEffect(() => {
    if (!ready) return;
    return openStream(
      '/api/v1/stream/ota',
      'campaigns',
      (data) => {
        if (Array.isArray(data)) setPushed(data as Campaign[]);
      },
      setLive,
    );
  }, [ready]);

  const list = pushed ?? first.data?.campaigns ?? [];
  return (
    <>
      <PageTitle>OTA campaigns</PageTitle>
      {off && (
        <p role="status" class="notice" data-testid="ota-off">
          {first.error}
        </p>
      )}
      {!off && <ErrorLine error={first.error} />}
      {!off && ready && (
        <>
          <p role="status" class="muted" data-testid="ota-live">
            {live === 'live' ? 'Live: updated as campaigns change.' : live === 'connecting' ? 'Connecting to the live stream…' : 'Live updates interrupted; retrying…'}
          </p>
          <section aria-labelledby="campaigns-h">
            <h2 id="campaigns-h">Campaigns ({list.length})</h2>
            <CampaignTable list={list} />
          </section>
          {list.length > 0 && (
            <section aria-labelledby="progress-h">
              <h2 id="progress-h">Stage progress</h2>
              {list.map((c) => (
                <div class="box" key={c.id}>
                  <h3>
                    Campaign <span class="mono">{c.id}</span> <span class={stateClass(c.state)}>({c.state})</span>
                  </h3>
                  <p class="muted">
                    Release {c.releaseId} to {c.target}; abort rule {text(c.abortRule?.text)}
                    {c.reason !== undefined && c.reason !== null && c.reason !== '' ? `; ${c.reason}` : ''}
                  </p>
                  <StageBars c={c} />
                </div>
              ))}
            </section>
          )}
        </>
      )}
    </>
  );
}
