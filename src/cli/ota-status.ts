/**
 * `bastion ota status [ID] [--watch] [--interval 1s] [--count N]` (issue 14) and the
 * per-stage campaign table that `bastion ota campaign status` prints too. Without --watch:
 * one snapshot of the running (and paused) campaigns. With --watch on a terminal: the
 * table redrawn in place every interval until Ctrl-C; otherwise plain snapshots appended,
 * until every campaign shown has ended or --count snapshots were printed. Owns: the
 * rendering and the watch loop. Must not: change anything (read-only on the stores).
 */
import type { Command } from 'commander';
import { ENDED, type CampaignRecord } from '../ota/campaigns/ports.js';
import { progressOf, type CampaignProgress } from '../ota/campaigns/progress.js';
import { withCampaignStores } from '../ota/campaigns/open-stores.js';
import { addProvisionSourceOptions, iso, provisionSource, usage, type ProvisionSourceOptions } from './provision-context.js';

/** `1s`, `500ms`, `2m` → ms, within [min, max]. */
export function parseDuration(flag: string, value: string, minMs: number, maxMs: number): number {
  const m = /^(\d{1,7})(ms|s|m|h|d)$/.exec(value);
  if (m === null) throw usage(`${flag} takes a number and a unit ms, s, m, h or d (e.g. 30m), got "${value}"`);
  const unit: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const ms = Number(m[1]) * unit[m[2]!]!;
  if (ms < minMs || ms > maxMs) throw usage(`${flag} is ${fmtMs(minMs)} to ${fmtMs(maxMs)}, got "${value}"`);
  return ms;
}

export function fmtMs(ms: number): string {
  for (const [u, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms >= n && ms % n === 0) return `${ms / n}${u}`;
  return `${ms}ms`;
}

/** Both stores read-only (null when the campaigns file does not exist: nothing was ever created). */
export { withCampaignStores };

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // The first column is left-aligned, the numbers right-aligned.
  return [header, ...rows].map((cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

/** The header line and per-stage table of one campaign. */
export function campaignLines(c: CampaignRecord, p: CampaignProgress): string[] {
  const rule = c.abortRule === null ? 'none' : `${c.abortRule.text} (failed ${p.failed} of ${p.terminal} terminal)`;
  const head = [
    `campaign ${c.id}: ${c.state}, stage ${c.stage}/${c.stageCounts.length}, release ${c.releaseId}, target ${c.target} (${c.targets.length} devices)`,
    `  abort ${rule}; timeout ${c.timeoutMs === null ? '-' : fmtMs(c.timeoutMs)}; retries ${c.maxRetries}; created ${iso(c.createdAt)}${c.endedAt !== null ? `; ended ${iso(c.endedAt)}` : ''}${c.reason !== null ? `; ${c.reason}` : ''}`,
  ];
  const rows = p.stages.map((s) => [
    `${s.stage}${s.stage === c.stage && !ENDED.has(c.state) ? '*' : ''}`,
    `${s.percent}%`,
    String(s.devices),
    String(s.waiting),
    String(s.queued),
    String(s.inProgress),
    String(s.succeeded),
    String(s.failed),
    String(s.timedOut),
    String(s.rejected),
    String(s.canceled),
  ]);
  return [...head, ...table(['STAGE', 'UPTO', 'DEVICES', 'WAITING', 'QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED'], rows).map((l) => `  ${l}`)];
}

interface Snapshot {
  lines: string[];
  /** The campaigns shown, with whether each has ended. */
  shown: Map<string, boolean>;
}

function snapshot(dataDir: string, only: string | undefined, follow: ReadonlySet<string>): Snapshot {
  return withCampaignStores(dataDir, (s) => {
    const shown = new Map<string, boolean>();
    if (s === null) return { lines: ['no campaigns'], shown };
    const all = s.campaigns.list().filter((c) => (only !== undefined ? c.id === only : !ENDED.has(c.state) || follow.has(c.id)));
    if (only !== undefined && all.length === 0) throw usage(`no campaign ${only}`);
    const lines: string[] = [];
    for (const c of all) {
      shown.set(c.id, ENDED.has(c.state));
      lines.push(...campaignLines(c, progressOf(c, s.jobs.executionsOf(c.jobId))));
    }
    return { lines: lines.length > 0 ? lines : ['no running campaigns'], shown };
  });
}

type StatusOptions = ProvisionSourceOptions & { watch?: boolean; interval?: string; count?: string };

async function status(id: string | undefined, opts: StatusOptions): Promise<void> {
  const intervalMs = parseDuration('--interval', opts.interval ?? '1s', 100, 3_600_000);
  let count: number | null = null;
  if (opts.count !== undefined) {
    if (!/^\d{1,6}$/.test(opts.count) || Number(opts.count) < 1) throw usage(`--count is a whole number from 1, got "${opts.count}"`);
    count = Number(opts.count);
  }
  const { dataDir } = await provisionSource(opts);
  const first = snapshot(dataDir, id, new Set());
  if (opts.watch !== true) return void process.stdout.write(`${first.lines.join('\n')}\n`);
  const tty = process.stdout.isTTY === true;
  // Campaigns seen running stay on screen until they end, so their last state is printed.
  const follow = new Set(first.shown.keys());
  let printed = 0;
  let prevLines = 0;
  let stop = false;
  let wake: (() => void) | null = null;
  const onSigint = (): void => {
    stop = true;
    wake?.();
  };
  process.on('SIGINT', onSigint);
  try {
    let snap = first;
    for (;;) {
      if (tty) {
        // Up to the first line of the previous frame, then clear to the end of the screen.
        const redraw = prevLines > 0 ? `\x1b[${prevLines}F\x1b[J` : '';
        const frame = [`bastion ota status  ${new Date().toISOString()}  (every ${fmtMs(intervalMs)}; Ctrl-C to stop)`, ...snap.lines];
        process.stdout.write(`${redraw}${frame.join('\n')}\n`);
        prevLines = frame.length;
      } else {
        process.stdout.write(`--- ${new Date().toISOString()}\n${snap.lines.join('\n')}\n`);
      }
      printed++;
      for (const k of snap.shown.keys()) follow.add(k);
      const allEnded = [...snap.shown.values()].every((ended) => ended);
      if (stop || (count !== null && printed >= count) || (!tty && allEnded)) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        wake = () => (clearTimeout(t), resolve());
      });
      wake = null;
      if (stop) return;
      snap = snapshot(dataDir, id, follow);
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

export function registerOtaStatusCommand(ota: Command): void {
  addProvisionSourceOptions(
    ota
      .command('status [campaign]')
      .description('a per-stage table of the running campaigns (or one); --watch redraws it (a terminal) or appends snapshots until they end')
      .option('--watch', 'keep showing it')
      .option('--interval <duration>', 'how often with --watch (e.g. 1s, 500ms)', '1s')
      .option('--count <n>', 'with --watch: stop after this many snapshots'),
  ).action((id: string | undefined, opts: StatusOptions) => status(id, opts));
}
