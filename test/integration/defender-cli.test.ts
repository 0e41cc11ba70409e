/**
 * `bastion defender alerts | release | rules` end to end: the built CLI over a data
 * directory whose defender.db the test fills through the real SQLite store (as a broker
 * would), text and JSON, filters, a release seen in the store and in the pending admin
 * changes, the effective rules with and without a config, and bad input (exit 2).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DefenderStore, NewAlert } from '../../src/defender/response/alert-store.js';
import { DEFENDER_DB_FILE, openDefenderStore } from '../../src/store/sqlite/defender-store.js';
import { PENDING_CHANGES_DB_FILE, SqlitePendingChangesStore } from '../../src/store/sqlite/pending-changes-store.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

const work = await mkdtemp(join(tmpdir(), 'defender-cli-'));
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const bastion = (args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, ...args], { cwd: work, timeoutMs: 20_000 });

function oneLineError(r: ProcResult): string {
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.equal(r.stdout, '');
  return r.stderr.trimEnd();
}

const T0 = Date.parse('2026-12-07T10:00:00Z');
const LISTENER = ['listeners:', '  - { name: lan, protocol: mqtt, host: 127.0.0.1, port: 1883, insecure: true }'];

function alert(over: Partial<NewAlert>): NewAlert {
  return { rule: 'reconnects', identity: 'dev-1', role: 'device', value: 9, threshold: 5, items: [], raisedAt: T0, node: 'n1', dryRun: false, actions: [], ...over };
}

async function withStore<T>(dataDir: string, fn: (s: DefenderStore) => T): Promise<T> {
  const store: DefenderStore = openDefenderStore(dataDir);
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

interface AlertsJson {
  total: number;
  alerts: Array<{ id: number; rule: string; identity: string; state: string; actions: Array<{ action: string; outcome: string }> }>;
}

describe('bastion defender alerts', () => {
  test('no defender.db: "no alerts yet", exit 0, and nothing is created', async () => {
    const dir = join(work, 'empty');
    await mkdir(dir);
    const r = await bastion(['defender', 'alerts', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^no alerts yet \(no defender\.db in .*empty\)\n$/);
    const j = await bastion(['defender', 'alerts', '--json', '--data-dir', dir]);
    assert.equal(j.code, 0, j.stderr);
    assert.deepEqual(JSON.parse(j.stdout), { total: 0, alerts: [] });
    assert.equal(existsSync(join(dir, DEFENDER_DB_FILE)), false, 'a read-only command creates no store');
  });

  const dir = join(work, 'alerts');
  const ids: number[] = [];
  test('alerts put in through the store: text lines newest first with value, threshold, actions and a total; JSON {total, alerts}', async () => {
    await mkdir(dir);
    await withStore(dir, (s) => {
      ids.push(s.addAlert(alert({ actions: [{ action: 'quarantine', outcome: 'applied' }] })));
      ids.push(s.addAlert(alert({ rule: 'new-topic-prefix', identity: 'dev-2', value: 1, threshold: 0, items: ['cmd'], raisedAt: T0 + 60_000, dryRun: true, actions: [{ action: 'ban', outcome: 'dry-run' }] })));
      s.addOutcome(ids[1]!, { action: 'webhook', outcome: 'failed', detail: 'HTTP 503' });
      ids.push(s.addAlert(alert({ rule: 'authz-denials', value: 12, raisedAt: T0 + 120_000 })));
      s.clearAlert(ids[2]!, T0 + 180_000);
    });
    const r = await bastion(['defender', 'alerts', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, new RegExp(`^#${ids[2]}  cleared   authz-denials  dev-1  value 12 vs threshold 5  raised 2026-12-07T10:02:00\\.000Z  cleared 2026-12-07T10:03:00\\.000Z  actions: alert only$`));
    assert.match(lines[1]!, new RegExp(`^#${ids[1]}  active    new-topic-prefix  dev-2  value 1 vs threshold 0 .*actions: ban dry-run, webhook failed \\(HTTP 503\\) \\[dry run\\]  new: cmd$`));
    assert.match(lines[2]!, new RegExp(`^#${ids[0]}  active    reconnects  dev-1  value 9 vs threshold 5  raised 2026-12-07T10:00:00\\.000Z  actions: quarantine applied$`));
    assert.equal(lines[3], '3 of 3 alert(s) shown, newest first');

    const j = await bastion(['defender', 'alerts', '--json', '--data-dir', dir]);
    assert.equal(j.code, 0, j.stderr);
    const body = JSON.parse(j.stdout) as AlertsJson;
    assert.equal(body.total, 3);
    assert.deepEqual(body.alerts.map((a) => a.id), [ids[2], ids[1], ids[0]]);
    assert.deepEqual(body.alerts[1]!.actions.map((a) => `${a.action}:${a.outcome}`), ['ban:dry-run', 'webhook:failed']);
  });

  test('filters: --state, --identity, --rule, --limit (total still counts every match); -c names the data directory', async () => {
    const json = async (args: string[]): Promise<AlertsJson> => {
      const r = await bastion(['defender', 'alerts', '--json', '--data-dir', dir, ...args]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as AlertsJson;
    };
    assert.deepEqual((await json(['--state', 'active'])).alerts.map((a) => a.id), [ids[1], ids[0]]);
    assert.deepEqual((await json(['--identity', 'dev-1'])).alerts.map((a) => a.id), [ids[2], ids[0]]);
    assert.deepEqual((await json(['--rule', 'new-topic-prefix'])).alerts.map((a) => a.identity), ['dev-2']);
    assert.deepEqual((await json(['--identity', 'dev-1', '--state', 'cleared'])).alerts.map((a) => a.rule), ['authz-denials']);
    const limited = await json(['--limit', '1']);
    assert.equal(limited.total, 3);
    assert.equal(limited.alerts.length, 1);
    const none = await bastion(['defender', 'alerts', '--data-dir', dir, '--identity', 'nobody']);
    assert.equal(none.stdout, 'no alerts match\n');

    const config = join(work, 'alerts.yaml');
    await writeFile(config, [`dataDir: ${dir}`, ...LISTENER, ''].join('\n'));
    const viaConfig = await bastion(['defender', 'alerts', '-c', config, '--rule', 'reconnects']);
    assert.equal(viaConfig.code, 0, viaConfig.stderr);
    assert.match(viaConfig.stdout, /reconnects  dev-1 .*\n1 of 1 alert\(s\) shown/);
  });
});

describe('bastion defender release', () => {
  test('releases the identity: exit 0, prints the alerts and restrictions, the store shows them released, recorded as an admin change; again: exit 1', async () => {
    const dir = join(work, 'release');
    await mkdir(dir);
    const [a1, other] = await withStore(dir, (s) => {
      const a = s.addAlert(alert({ identity: 'dev-9' }));
      const o = s.addAlert(alert({ identity: 'dev-10' }));
      s.addRestriction({ identity: 'dev-9', kind: 'quarantine', alertId: a, appliedAt: T0, expiresAt: null });
      s.addRestriction({ identity: 'dev-9', kind: 'ban', alertId: a, appliedAt: T0 + 1, expiresAt: T0 + 3_600_000, banKind: 'identity', banValue: 'dev-9' });
      s.addRestriction({ identity: 'dev-10', kind: 'throttle', alertId: o, appliedAt: T0, expiresAt: null });
      return [a, o];
    });

    const r = await bastion(['defender', 'release', 'dev-9', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'released dev-9: 1 alert(s), 2 restriction(s)');
    assert.match(lines[1]!, new RegExp(`^  quarantine  \\(alert #${a1}, applied 2026-12-07T10:00:00\\.000Z\\)$`));
    assert.match(lines[2]!, /^  ban identity:dev-9  \(alert #\d+, applied .*, was to expire 2026-12-07T11:00:00\.000Z\)$/);
    assert.match(lines[3]!, /running broker lifts these restrictions within a second/);

    await withStore(dir, (s) => {
      const a = s.getAlert(a1)!;
      assert.equal(a.state, 'released');
      assert.match(a.releasedBy ?? '', /^cli:\S+$/);
      assert.deepEqual(s.activeRestrictions().map((x) => x.identity), ['dev-10'], 'another identity is untouched');
      assert.equal(s.getAlert(other)?.state, 'active');
    });
    const pending = SqlitePendingChangesStore.open(join(dir, PENDING_CHANGES_DB_FILE));
    try {
      const changes = pending.list(10).filter((c) => c.action === 'defender.release');
      assert.deepEqual(changes.map((c) => `${c.target}:${c.outcome}`), ['dev-9:ok']);
      assert.deepEqual(changes[0]!.detail?.['restrictions'], ['quarantine', 'ban']);
    } finally {
      pending.close();
    }

    const again = await bastion(['defender', 'release', 'dev-9', '--data-dir', dir]);
    assert.equal(again.code, 1);
    assert.equal(oneLineError(again), 'bastion: nothing to release for dev-9');
  });

  // A ban released while the broker is stopped is lifted at its next start: test/integration/defender-actions.test.ts.

  test('no defender.db: nothing to release, exit 1, nothing created', async () => {
    const dir = join(work, 'release-empty');
    await mkdir(dir);
    const r = await bastion(['defender', 'release', 'dev-1', '--data-dir', dir]);
    assert.equal(r.code, 1);
    assert.equal(oneLineError(r), 'bastion: nothing to release for dev-1');
    assert.equal(existsSync(join(dir, DEFENDER_DB_FILE)), false);
  });
});

interface RulesJson {
  enabled: boolean;
  dryRun: boolean;
  windowSeconds: number;
  rules: Array<{ name: string; kind: string }>;
  actions: Record<string, string[]>;
}

describe('bastion defender rules', () => {
  test('defaults: the nine built-in rules, each alerting only', async () => {
    const r = await bastion(['defender', 'rules', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const v = JSON.parse(r.stdout) as RulesJson;
    assert.equal(v.enabled, true);
    assert.equal(v.dryRun, false);
    assert.equal(v.windowSeconds, 30);
    assert.equal(v.rules.length, 9);
    assert.ok(v.rules.every((rule) => JSON.stringify(v.actions[rule.name]) === '["alert"]'));
    const text = await bastion(['defender', 'rules']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^detection on, 30 s windows\n/);
    assert.match(text.stdout, /^reconnects +static +connects > 5 +actions: alert$/m);
    assert.match(text.stdout, /^auth-failures-address +static +authFailures > 10 +roles: \$address +actions: alert$/m);
    assert.match(text.stdout, /^new-address-prefix +new +an address \(\/24 IPv4, \/48 IPv6\) never seen/m);
    assert.match(text.stdout, /^9 rule\(s\) \(built-in/m);
  });

  test('a config with rules, actions, dry run and window; an action for an unknown rule name is warned about on stderr', async () => {
    const config = join(work, 'rules.yaml');
    await writeFile(
      config,
      [
        ...LISTENER,
        'defender:',
        '  detect:',
        '    windowSeconds: 60',
        '    dryRun: true',
        '    defaultActions: [throttle]',
        '    rules:',
        '      - { kind: static, name: denials, metric: authzDenials, operator: gte, value: 3 }',
        '      - { kind: baseline, name: volume, metric: bytesSent, span: 2 }',
        '    actions:',
        '      denials: [ban, quarantine]',
        '      denails: [disconnect]',
        '',
      ].join('\n'),
    );
    const r = await bastion(['defender', 'rules', '--json', '-c', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "bastion: warning: defender.detect.actions names rule 'denails', which no rule has: its actions are never taken\n");
    const v = JSON.parse(r.stdout) as RulesJson;
    assert.equal(v.dryRun, true);
    assert.equal(v.windowSeconds, 60);
    assert.deepEqual(v.rules.map((x) => `${x.name}:${x.kind}`), ['denials:static', 'volume:baseline']);
    assert.deepEqual(v.actions, { denials: ['alert', 'quarantine', 'ban'], volume: ['alert', 'throttle'] });

    const text = await bastion(['defender', 'rules', '-c', config]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^detection on, 60 s windows, dry run/);
    assert.match(text.stdout, /^denials +static +authzDenials >= 3 +actions: alert, quarantine, ban$/m);
    assert.match(text.stdout, /^volume +baseline +bytesSent over 2 windows > own mean \+ 6 sigma.* +actions: alert, throttle$/m);
    assert.match(text.stdout, /^2 rule\(s\)$/m);
    assert.match(text.stderr, /'denails'/);
  });
});

describe('bad input: one line on stderr, exit 2', () => {
  test('a bad --state, --limit, unknown flag, missing data directory, bad config, empty identity', async () => {
    const dir = join(work, 'bad');
    await mkdir(dir);
    const cases: Array<[string[], RegExp]> = [
      [['defender', 'alerts', '--data-dir', dir, '--state', 'open'], /argument 'open' is invalid\. Allowed choices are active, cleared, released/],
      [['defender', 'alerts', '--data-dir', dir, '--limit', '0'], /expected a whole number from 1 to 1000/],
      [['defender', 'alerts', '--data-dir', dir, '--limit', '5000'], /expected a whole number from 1 to 1000/],
      [['defender', 'alerts', '--bogus'], /unknown option '--bogus'/],
      [['defender', 'alerts', '--data-dir', join(work, 'nope')], /^bastion: data directory .*nope does not exist/],
      [['defender', 'release', 'dev-1', '--data-dir', join(work, 'nope')], /^bastion: data directory .*nope does not exist/],
      [['defender', 'release'], /missing required argument 'identity'/],
      [['defender', 'release', '', '--data-dir', dir], /^bastion: IDENTITY must be 1 to 1024 characters/],
      [['defender', 'rules', '-c', join(work, 'missing.yaml')], /^bastion: cannot read config file/],
    ];
    for (const [args, message] of cases) {
      const r = await bastion(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(oneLineError(r), message);
    }
    const broken = join(work, 'broken.yaml');
    await writeFile(broken, [...LISTENER, 'defender:', '  detect:', '    rules:', '      - { kind: static, name: x, metric: noSuchMetric, operator: gt, value: 1 }', ''].join('\n'));
    for (const args of [['defender', 'rules', '-c', broken], ['defender', 'alerts', '-c', broken], ['defender', 'release', 'dev-1', '-c', broken]]) {
      const r = await bastion(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(oneLineError(r), /^bastion: config error at defender\.detect\.rules/);
    }
  });
});
