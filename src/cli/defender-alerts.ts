/**
 * `bastion defender alerts` and `bastion defender release IDENTITY`: the alerts in
 * `<dataDir>/defender.db` and the release of an identity's restrictions, straight on the
 * file (WAL: alongside a running broker, which polls the file and lifts what was released).
 * Owns: these commands' output and exit codes. Must not: lift a restriction itself (the
 * broker does, it holds the live sessions and the ban list) or decide what an alarm does.
 *
 * Exit codes: alerts 0 (also with no defender.db: no alerts yet); release 0 when something
 * was released, 1 when nothing was; 2 bad input (a flag, a config, a missing data directory).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { StoredAlert, StoredAlertState, StoredRestriction } from '../store/sqlite/defender-store.js';
import { badInput, clean, dataDirOf, type SourceOptions } from './defender-source.js';

export interface AlertsOptions extends SourceOptions {
  state?: StoredAlertState;
  identity?: string;
  rule?: string;
  limit: number;
  json?: boolean;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** A data directory that must exist: a mistyped --data-dir is bad input, not "no alerts". */
async function existingDataDir(opts: SourceOptions): Promise<string> {
  let dataDir: string;
  try {
    dataDir = await dataDirOf(opts);
  } catch (err) {
    badInput(err);
  }
  if (!existsSync(dataDir)) badInput(new BastionError('ERR_USAGE', `data directory ${dataDir} does not exist (pass --data-dir DIR or -c CONFIG)`));
  return dataDir;
}

async function openStore(dataDir: string): Promise<import('../store/sqlite/defender-store.js').SqliteDefenderStore | null> {
  const { DEFENDER_DB_FILE, openDefenderStore } = await import('../store/sqlite/defender-store.js');
  // SECURITY: read-only commands create nothing: no defender.db means the broker raised no alert yet.
  if (!existsSync(join(dataDir, DEFENDER_DB_FILE))) return null;
  try {
    return openDefenderStore(dataDir);
  } catch (err) {
    badInput(err);
  }
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** One line: id, state, rule, identity, value vs threshold, raised, actions with outcomes. */
export function formatAlert(a: StoredAlert): string {
  const actions = a.actions.length === 0 ? 'alert only' : a.actions.map((o) => `${o.action} ${o.outcome}${o.detail !== undefined ? ` (${clean(o.detail)})` : ''}`).join(', ');
  const items = a.items.length > 0 ? `  new: ${a.items.map(clean).join(', ')}` : '';
  const when = a.state === 'cleared' && a.clearedAt !== null ? `  cleared ${iso(a.clearedAt)}` : a.state === 'released' && a.releasedAt !== null ? `  released ${iso(a.releasedAt)} by ${clean(a.releasedBy ?? '?')}` : '';
  return `#${a.id}  ${a.state.padEnd(8)}  ${clean(a.rule)}  ${clean(a.identity)}  value ${formatNumber(a.value)} vs threshold ${formatNumber(a.threshold)}  raised ${iso(a.raisedAt)}${when}  actions: ${actions}${a.dryRun ? ' [dry run]' : ''}${items}`;
}

export async function listAlertsCommand(opts: AlertsOptions): Promise<void> {
  const dataDir = await existingDataDir(opts);
  const store = await openStore(dataDir);
  if (store === null) {
    process.stdout.write(opts.json === true ? `${JSON.stringify({ total: 0, alerts: [] }, null, 2)}\n` : `no alerts yet (no defender.db in ${dataDir})\n`);
    return;
  }
  try {
    const page = store.listAlerts({
      ...(opts.state !== undefined ? { state: opts.state } : {}),
      ...(opts.identity !== undefined ? { identity: opts.identity } : {}),
      ...(opts.rule !== undefined ? { rule: opts.rule } : {}),
      limit: opts.limit,
    });
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
      return;
    }
    const lines = page.alerts.map(formatAlert);
    lines.push(page.total === 0 ? 'no alerts match' : `${page.alerts.length} of ${page.total} alert(s) shown, newest first`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    store.close();
  }
}

function formatRestriction(r: StoredRestriction): string {
  const ban = r.kind === 'ban' && r.banKind !== undefined ? ` ${clean(r.banKind)}:${clean(r.banValue ?? '')}` : '';
  const expiry = r.expiresAt !== null ? `, was to expire ${iso(r.expiresAt)}` : '';
  return `  ${r.kind}${ban}  (alert #${r.alertId}, applied ${iso(r.appliedAt)}${expiry})`;
}

export async function releaseCommand(identity: string, opts: SourceOptions): Promise<void> {
  if (identity.length === 0 || identity.length > 1024 || clean(identity) !== identity) badInput(new BastionError('ERR_USAGE', 'IDENTITY must be 1 to 1024 characters with no control characters'));
  const dataDir = await existingDataDir(opts);
  const nothing = (): void => {
    process.stderr.write(`bastion: nothing to release for ${identity}\n`);
    process.exitCode = 1;
  };
  const store = await openStore(dataDir);
  if (store === null) return nothing();
  const { auditedChange, localUserName } = await import('./cli-change.js');
  let released: { alerts: number; restrictions: StoredRestriction[] };
  try {
    // Recorded as an admin change (the broker drains it into its audit log), a release that found nothing as not-found.
    released = await auditedChange(
      dataDir,
      'defender.release',
      identity,
      () => {
        const r = store.release(identity, `cli:${localUserName()}`, Date.now());
        if (r.alerts === 0 && r.restrictions.length === 0) throw new BastionError('ERR_NOT_FOUND', `nothing to release for ${identity}`);
        return r;
      },
      (r) => ({ alerts: r.alerts, restrictions: r.restrictions.map((x) => x.kind) }),
    );
  } catch (err) {
    if (err instanceof BastionError && err.code === 'ERR_NOT_FOUND') return nothing();
    badInput(err);
  } finally {
    store.close();
  }
  const lines = [`released ${identity}: ${released.alerts} alert(s), ${released.restrictions.length} restriction(s)`, ...released.restrictions.map(formatRestriction)];
  if (released.restrictions.length > 0) lines.push('A running broker lifts these restrictions within a second (it polls defender.db).');
  process.stdout.write(`${lines.join('\n')}\n`);
}
