/**
 * The defender store over a real SQLite file in a temp dir: every method of the
 * DefenderStore port (alerts, outcomes, clear, list with filters and paging, restrictions
 * replaced per (identity, kind), release in one go, prune), two handles on one file (each
 * sees the other's writes through changedElsewhere), a reopen keeping the data, the file's
 * mode, and a schema newer than this code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BastionError } from '../../src/core/errors.js';
import type { DefenderStore, NewAlert } from '../../src/defender/response/alert-store.js';
import { DEFENDER_DB_FILE, MAX_ALERT_PAGE, openDefenderStore } from '../../src/store/sqlite/defender-store.js';

const dirs: string[] = [];
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-defender-store-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const T0 = Date.parse('2026-12-07T10:00:00Z');
const MIN = 60_000;

/** The adapter as the port: this assignment is what keeps the two shapes in step. */
function open(dir: string): DefenderStore {
  const store: DefenderStore = openDefenderStore(dir);
  return store;
}

function alert(over: Partial<NewAlert> = {}): NewAlert {
  return { rule: 'reconnects', identity: 'dev-1', role: 'device', value: 9, threshold: 5, items: [], raisedAt: T0, node: 'n1', dryRun: false, actions: [], ...over };
}

describe('defender store', () => {
  it('addAlert and getAlert keep every field; addOutcome appends in order; unknown id is null', () => {
    const store = open(dataDir());
    try {
      const id = store.addAlert(alert({ rule: 'new-topic-prefix', items: ['cmd', 'admin'], value: 2, threshold: 0, dryRun: true, actions: [{ action: 'quarantine', outcome: 'dry-run' }] }));
      store.addOutcome(id, { action: 'webhook', outcome: 'failed', detail: 'HTTP 500' });
      const a = store.getAlert(id);
      assert.deepEqual(a, {
        id,
        rule: 'new-topic-prefix',
        identity: 'dev-1',
        role: 'device',
        state: 'active',
        value: 2,
        threshold: 0,
        items: ['cmd', 'admin'],
        raisedAt: T0,
        clearedAt: null,
        releasedAt: null,
        releasedBy: null,
        node: 'n1',
        dryRun: true,
        actions: [
          { action: 'quarantine', outcome: 'dry-run' },
          { action: 'webhook', outcome: 'failed', detail: 'HTTP 500' },
        ],
      });
      assert.equal(store.getAlert(id + 100), null);
      assert.throws(() => store.addOutcome(id + 100, { action: 'ban', outcome: 'applied' }), (e: unknown) => e instanceof BastionError && /no alert with id/.test(e.message));
    } finally {
      store.close();
    }
  });

  it('clearAlert clears an active alert only', () => {
    const store = open(dataDir());
    try {
      const id = store.addAlert(alert());
      store.clearAlert(id, T0 + MIN);
      assert.equal(store.getAlert(id)?.state, 'cleared');
      assert.equal(store.getAlert(id)?.clearedAt, T0 + MIN);
      const other = store.addAlert(alert({ identity: 'dev-2' }));
      store.release('dev-2', 'cli:ops', T0 + 2 * MIN);
      store.clearAlert(other, T0 + 3 * MIN);
      assert.equal(store.getAlert(other)?.state, 'released', 'a released alert does not go back to cleared');
      assert.equal(store.getAlert(other)?.clearedAt, null);
    } finally {
      store.close();
    }
  });

  it('listAlerts: newest first, filters by state, identity and rule, paging, total counted, limit capped at 1000', () => {
    const store = open(dataDir());
    try {
      const ids: number[] = [];
      for (let i = 0; i < 6; i++) ids.push(store.addAlert(alert({ identity: i % 2 === 0 ? 'dev-a' : 'dev-b', rule: i < 3 ? 'reconnects' : 'authz-denials', raisedAt: T0 + i * MIN })));
      store.clearAlert(ids[0]!, T0 + 10 * MIN);

      const all = store.listAlerts({});
      assert.equal(all.total, 6);
      assert.deepEqual(all.alerts.map((a) => a.id), [...ids].reverse());

      assert.deepEqual(store.listAlerts({ identity: 'dev-a' }).alerts.map((a) => a.id), [ids[4], ids[2], ids[0]]);
      assert.deepEqual(store.listAlerts({ rule: 'authz-denials', identity: 'dev-b' }).alerts.map((a) => a.id), [ids[5], ids[3]]);
      const cleared = store.listAlerts({ state: 'cleared' });
      assert.equal(cleared.total, 1);
      assert.equal(cleared.alerts[0]!.id, ids[0]);
      assert.equal(store.listAlerts({ state: 'active' }).total, 5);
      assert.equal(store.listAlerts({ identity: 'nobody' }).total, 0);

      const page = store.listAlerts({ offset: 2, limit: 2 });
      assert.equal(page.total, 6, 'total counts every match, not the page');
      assert.deepEqual(page.alerts.map((a) => a.id), [ids[3], ids[2]]);

      for (let i = 0; i < MAX_ALERT_PAGE + 5; i++) store.addAlert(alert({ identity: 'bulk', raisedAt: T0 + 100 * MIN }));
      const big = store.listAlerts({ identity: 'bulk', limit: 5000 });
      assert.equal(big.total, MAX_ALERT_PAGE + 5);
      assert.equal(big.alerts.length, MAX_ALERT_PAGE);
    } finally {
      store.close();
    }
  });

  it('addRestriction replaces the unreleased restriction of the same identity and kind; activeRestrictions oldest first', () => {
    const store = open(dataDir());
    try {
      const a1 = store.addAlert(alert());
      const a2 = store.addAlert(alert({ raisedAt: T0 + MIN }));
      store.addRestriction({ identity: 'dev-1', kind: 'quarantine', alertId: a1, appliedAt: T0, expiresAt: null });
      store.addRestriction({ identity: 'dev-1', kind: 'ban', alertId: a1, appliedAt: T0 + 1, expiresAt: T0 + 3600_000, banKind: 'identity', banValue: 'dev-1' });
      store.addRestriction({ identity: 'dev-2', kind: 'quarantine', alertId: a1, appliedAt: T0 + 2, expiresAt: null });
      // A second quarantine of dev-1 replaces the first.
      store.addRestriction({ identity: 'dev-1', kind: 'quarantine', alertId: a2, appliedAt: T0 + MIN, expiresAt: null });
      const active = store.activeRestrictions();
      assert.deepEqual(
        active.map((r) => `${r.identity}:${r.kind}:${r.alertId}`),
        [`dev-1:ban:${a1}`, `dev-2:quarantine:${a1}`, `dev-1:quarantine:${a2}`],
      );
      const ban = active[0]!;
      assert.equal(ban.banKind, 'identity');
      assert.equal(ban.banValue, 'dev-1');
      assert.equal(ban.expiresAt, T0 + 3600_000);
      assert.equal(ban.releasedAt, null);
      assert.equal('banKind' in active[1]!, false, 'no ban fields on a quarantine');
    } finally {
      store.close();
    }
  });

  it('release: active alerts released and restrictions released in one go, returned; a second release finds nothing; other identities untouched', () => {
    const store = open(dataDir());
    try {
      const a1 = store.addAlert(alert());
      const a2 = store.addAlert(alert({ rule: 'authz-denials', raisedAt: T0 + MIN }));
      const cleared = store.addAlert(alert({ rule: 'concurrent-sessions', raisedAt: T0 - MIN }));
      store.clearAlert(cleared, T0);
      const other = store.addAlert(alert({ identity: 'dev-2' }));
      store.addRestriction({ identity: 'dev-1', kind: 'throttle', alertId: a1, appliedAt: T0, expiresAt: null });
      store.addRestriction({ identity: 'dev-1', kind: 'ban', alertId: a2, appliedAt: T0 + MIN, expiresAt: T0 + 10 * MIN, banKind: 'identity', banValue: 'dev-1' });
      store.addRestriction({ identity: 'dev-2', kind: 'quarantine', alertId: other, appliedAt: T0, expiresAt: null });

      const r = store.release('dev-1', 'cli:alice', T0 + 5 * MIN);
      assert.equal(r.alerts, 2);
      assert.deepEqual(r.restrictions.map((x) => `${x.kind}:${x.releasedBy}:${x.releasedAt}`), [`throttle:cli:alice:${T0 + 5 * MIN}`, `ban:cli:alice:${T0 + 5 * MIN}`]);
      assert.equal(r.restrictions[1]!.banValue, 'dev-1');
      for (const id of [a1, a2]) {
        const a = store.getAlert(id)!;
        assert.equal(a.state, 'released');
        assert.equal(a.releasedBy, 'cli:alice');
        assert.equal(a.releasedAt, T0 + 5 * MIN);
      }
      assert.equal(store.getAlert(cleared)?.state, 'cleared', 'a cleared alert keeps its state');
      assert.equal(store.getAlert(other)?.state, 'active');
      assert.deepEqual(store.activeRestrictions().map((x) => `${x.identity}:${x.kind}`), ['dev-2:quarantine']);
      assert.deepEqual(store.release('dev-1', 'cli:alice', T0 + 6 * MIN), { alerts: 0, restrictions: [] });
      // After a release a new restriction of the same kind can be added again.
      store.addRestriction({ identity: 'dev-1', kind: 'ban', alertId: a2, appliedAt: T0 + 7 * MIN, expiresAt: null });
      assert.equal(store.activeRestrictions().length, 2);
    } finally {
      store.close();
    }
  });

  it('releaseRestriction releases one restriction (an expired ban) and leaves the rest', () => {
    const store = open(dataDir());
    try {
      const a = store.addAlert(alert());
      store.addRestriction({ identity: 'dev-1', kind: 'ban', alertId: a, appliedAt: T0, expiresAt: T0 + MIN, banKind: 'identity', banValue: 'dev-1' });
      store.addRestriction({ identity: 'dev-1', kind: 'quarantine', alertId: a, appliedAt: T0, expiresAt: null });
      store.releaseRestriction('dev-1', 'ban', 'expiry', T0 + MIN);
      assert.deepEqual(store.activeRestrictions().map((x) => x.kind), ['quarantine']);
      assert.equal(store.getAlert(a)?.state, 'active', 'the alert itself is not released');
      const r = store.release('dev-1', 'op', T0 + 2 * MIN);
      assert.deepEqual(r.restrictions.map((x) => x.kind), ['quarantine'], 'the released ban is not released twice');
    } finally {
      store.close();
    }
  });

  it('prune deletes old cleared and released alerts with their outcomes, keeps active ones and those whose restriction is in force', () => {
    const dir = dataDir();
    const store = open(dir);
    try {
      const oldCleared = store.addAlert(alert({ identity: 'a', raisedAt: T0, actions: [{ action: 'disconnect', outcome: 'applied' }] }));
      store.clearAlert(oldCleared, T0 + MIN);
      const oldReleased = store.addAlert(alert({ identity: 'b', raisedAt: T0 }));
      store.addRestriction({ identity: 'b', kind: 'quarantine', alertId: oldReleased, appliedAt: T0, expiresAt: null });
      store.release('b', 'op', T0 + MIN);
      const oldActive = store.addAlert(alert({ identity: 'c', raisedAt: T0 }));
      const oldRestricted = store.addAlert(alert({ identity: 'd', raisedAt: T0 }));
      store.addRestriction({ identity: 'd', kind: 'ban', alertId: oldRestricted, appliedAt: T0, expiresAt: null });
      store.clearAlert(oldRestricted, T0 + MIN);
      const recent = store.addAlert(alert({ identity: 'e', raisedAt: T0 + 60 * MIN }));
      store.clearAlert(recent, T0 + 61 * MIN);

      const outcomes = (): number => {
        const raw = new Database(join(dir, DEFENDER_DB_FILE), { readonly: true });
        try {
          return (raw.prepare('SELECT COUNT(*) AS n FROM outcomes WHERE alert_id = ?').get(oldCleared) as { n: number }).n;
        } finally {
          raw.close();
        }
      };
      assert.equal(outcomes(), 1);
      assert.equal(store.prune(T0 + 30 * MIN), 2);
      assert.equal(outcomes(), 0, 'the outcomes of a pruned alert go with it');
      assert.equal(store.getAlert(oldCleared), null);
      assert.equal(store.getAlert(oldReleased), null);
      assert.notEqual(store.getAlert(oldActive), null);
      assert.notEqual(store.getAlert(oldRestricted), null);
      assert.notEqual(store.getAlert(recent), null);
      assert.deepEqual(store.activeRestrictions().map((x) => x.identity), ['d']);
      assert.equal(store.prune(T0 + 30 * MIN), 0);
    } finally {
      store.close();
    }
  });

  it('two handles on one file: each sees the other write through changedElsewhere, not its own', () => {
    const dir = dataDir();
    const broker = open(dir);
    const cli = open(dir);
    try {
      assert.equal(broker.changedElsewhere(), false, 'nothing since open');
      const id = broker.addAlert(alert());
      broker.addRestriction({ identity: 'dev-1', kind: 'quarantine', alertId: id, appliedAt: T0, expiresAt: null });
      assert.equal(broker.changedElsewhere(), false, 'its own writes do not count');
      assert.equal(cli.changedElsewhere(), true, "the other handle's writes do");
      assert.equal(cli.changedElsewhere(), false, 'once per change');

      const r = cli.release('dev-1', 'cli:bob', T0 + MIN);
      assert.equal(r.restrictions.length, 1);
      assert.equal(broker.changedElsewhere(), true);
      assert.equal(broker.changedElsewhere(), false);
      assert.deepEqual(broker.activeRestrictions(), []);
      assert.equal(broker.getAlert(id)?.releasedBy, 'cli:bob');
    } finally {
      broker.close();
      cli.close();
    }
  });

  it('a reopen keeps alerts, outcomes and restrictions; the file is 0600', () => {
    const dir = dataDir();
    const first = open(dir);
    const id = first.addAlert(alert({ items: ['10.0.0.0/24'], actions: [{ action: 'ban', outcome: 'applied' }] }));
    first.addRestriction({ identity: 'dev-1', kind: 'ban', alertId: id, appliedAt: T0, expiresAt: null, banKind: 'identity', banValue: 'dev-1' });
    const before = first.getAlert(id);
    first.close();
    first.close(); // closing twice is harmless

    assert.equal(statSync(join(dir, DEFENDER_DB_FILE)).mode & 0o777, 0o600);
    const again = open(dir);
    try {
      assert.deepEqual(again.getAlert(id), before);
      assert.deepEqual(again.activeRestrictions().map((r) => `${r.kind}:${r.banValue}`), ['ban:dev-1']);
      assert.ok(again.addAlert(alert()) > id, 'ids keep counting up');
    } finally {
      again.close();
    }
  });

  it('a file written by a newer Bastion is refused with a clear error; a missing data directory too', () => {
    const dir = dataDir();
    openDefenderStore(dir).close();
    const raw = new Database(join(dir, DEFENDER_DB_FILE));
    raw.pragma('user_version = 99');
    raw.close();
    assert.throws(() => openDefenderStore(dir), (e: unknown) => e instanceof BastionError && e.code === 'ERR_DEFENDER_STORE' && /newer than this Bastion/.test(e.message));
    assert.throws(() => openDefenderStore(join(dir, 'missing')), (e: unknown) => e instanceof BastionError && /cannot create the defender store/.test(e.message));
  });
});
