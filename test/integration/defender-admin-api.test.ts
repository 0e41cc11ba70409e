/**
 * The admin API's defender routes over real HTTPS: an operator certificate and a bearer
 * token from the real admin store, AdminServices.defender set to a small DefenderFacade
 * over a real SqliteDefenderStore in a temp dir (its release calls store.release, its rules
 * come from parseDetectConfig, its audit is buildReport over findings chosen here). Tests
 * the routes: listing and filters, one alert, restrictions, the release and its change
 * record, rules, the audit (404 before the first), bad input (400) and 501 without a defender.
 * The real facade is tested end to end with the broker elsewhere.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AdminChange } from '../../src/admin/api/admin-change.js';
import { startAdminApi, type AdminTls, type RunningAdminApi } from '../../src/admin/api/admin-server.js';
import type { AdminServices } from '../../src/admin/api/services.js';
import { generateAdminToken, hashAdminToken } from '../../src/admin/api/tokens.js';
import { BrokerApi } from '../../src/broker/api.js';
import { Broker } from '../../src/broker/broker.js';
import { adminSchema } from '../../src/core/admin-config.js';
import { buildReport, type AuditReport, type Finding } from '../../src/defender/audit/index.js';
import { parseDetectConfig, type DetectConfig } from '../../src/defender/detect/detect-config.js';
import type { DefenderFacade, DefenderRulesView } from '../../src/defender/facade.js';
import type { AlertQuery, DefenderStore, NewAlert } from '../../src/defender/response/alert-store.js';
import { actionsByRule } from '../../src/defender/response/rule-actions.js';
import { ListenerAuthenticator } from '../../src/security/authn/listener-authenticator.js';
import { DefaultAuthorizer } from '../../src/security/authz/default-authorizer.js';
import { BanList } from '../../src/security/limits/ban-list.js';
import { SqliteAdminStore } from '../../src/store/sqlite/admin-store.js';
import { openDefenderStore } from '../../src/store/sqlite/defender-store.js';
import { parseRulesDocument, type RulesOverride } from '../../src/server/defender-rules.js';
import { adminRequest, type AdminAnswer, type AdminCall } from '../helpers/admin.js';
import { issueClient, makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { RecordingLogger } from './tls-support.js';

/** The defender as the admin API sees it, over a real store: what the server's facade does, minus the broker. */
class StoreDefender implements DefenderFacade {
  report: AuditReport | null = null;
  readonly auditors: string[] = [];
  constructor(
    private readonly store: DefenderStore,
    private readonly detect: DetectConfig,
    private readonly findings: Finding[],
  ) {}
  listAlerts(query: AlertQuery): ReturnType<DefenderStore['listAlerts']> {
    return this.store.listAlerts(query);
  }
  getAlert(id: number): ReturnType<DefenderStore['getAlert']> {
    return this.store.getAlert(id);
  }
  restrictions(): ReturnType<DefenderStore['activeRestrictions']> {
    return this.store.activeRestrictions();
  }
  async release(identity: string, actor: string): Promise<ReturnType<DefenderStore['release']>> {
    return this.store.release(identity, actor, Date.now());
  }
  private override: RulesOverride | null = null;
  rules(): DefenderRulesView {
    const d = this.detect;
    const o = this.override;
    const rules = o?.doc.rules ?? d.rules;
    const actions = { actions: o?.doc.actions ?? d.actions, defaultActions: o?.doc.defaultActions ?? d.defaultActions };
    return { source: o === null ? 'config' : 'api', ...(o !== null ? { setBy: o.by, setAt: o.at } : {}), enabled: d.enabled, dryRun: d.dryRun, windowSeconds: d.windowSeconds, rules, actions: actionsByRule(actions, rules) };
  }
  async setRules(document: unknown, actor: string): Promise<DefenderRulesView> {
    this.override = { doc: parseRulesDocument(document), by: actor, at: Date.now() };
    return this.rules();
  }
  async resetRules(): Promise<DefenderRulesView> {
    this.override = null;
    return this.rules();
  }
  lastAudit(): AuditReport | null {
    return this.report;
  }
  async runAudit(actor: string): Promise<AuditReport> {
    this.auditors.push(actor);
    this.report = buildReport(this.findings, new Date());
    return this.report;
  }
}

const T0 = Date.parse('2026-12-07T10:00:00Z');
const FINDINGS: Finding[] = [
  { check: 'root-key-online', severity: 'low', subject: 'pki/root.key', message: 'the root key is on the broker', fix: 'bastion ca export-root --out DIR' },
  { check: 'plaintext-listener', severity: 'high', subject: 'lan', message: 'mqtt on 0.0.0.0', fix: 'use mqtts' },
];

let dir: string;
let pki: TestPki;
let operator: TestClientFiles;
let token: string;
let adminStore: SqliteAdminStore;
let store: DefenderStore;
let defender: StoreDefender;
let api: RunningAdminApi;
let bare: RunningAdminApi;
const changes: AdminChange[] = [];
const ids: Record<string, number> = {};

function alert(over: Partial<NewAlert>): NewAlert {
  return { rule: 'reconnects', identity: 'dev-1', role: 'device', value: 9, threshold: 5, items: [], raisedAt: T0, node: 'n1', dryRun: false, actions: [], ...over };
}

async function startApi(defenderService: AdminServices['defender']): Promise<RunningAdminApi> {
  const config = adminSchema.parse({ port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts: 'optional' } });
  // Real HTTPS: Node verifies the operator certificate against the test CA; the admin API reads the verdict.
  const tls: AdminTls = {
    serverOptions: () => ({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert), requestCert: true, rejectUnauthorized: false }),
    attach: () => undefined,
    close: () => undefined,
  };
  const broker = new Broker({ authenticator: new ListenerAuthenticator(), authorizer: new DefaultAuthorizer() });
  const services: AdminServices = {
    broker: new BrokerApi(broker),
    bans: new BanList(adminStore),
    tokens: adminStore,
    users: null,
    policy: null,
    ...(defenderService !== undefined ? { defender: defenderService } : {}),
    logger: new RecordingLogger(),
    onChange: (c) => changes.push(c),
  };
  return startAdminApi({ config, tls, services });
}

const call = (c: AdminCall, on: RunningAdminApi = api): Promise<AdminAnswer> => adminRequest(pki, on.port, c);
const op = (path: string, extra: Partial<AdminCall> = {}): Promise<AdminAnswer> => call({ path, client: operator, ...extra });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'defender-admin-api-'));
  pki = await makeTestPki(join(dir, 'pki'), ['device1']);
  operator = await issueClient(pki, 'op1', { organizationalUnit: 'operators' });
  adminStore = SqliteAdminStore.open(join(dir, 'admin.db'));
  token = generateAdminToken();
  adminStore.createToken({ name: 'ci-bot', hash: hashAdminToken(token), createdAt: T0, scope: 'admin' });
  store = openDefenderStore(dir);
  ids.a = store.addAlert(alert({ actions: [{ action: 'quarantine', outcome: 'applied' }] }));
  ids.b = store.addAlert(alert({ rule: 'new-topic-prefix', identity: 'dev-2', items: ['cmd'], raisedAt: T0 + 60_000 }));
  ids.c = store.addAlert(alert({ rule: 'authz-denials', raisedAt: T0 + 120_000 }));
  store.clearAlert(ids.c, T0 + 180_000);
  store.addRestriction({ identity: 'dev-1', kind: 'quarantine', alertId: ids.a, appliedAt: T0, expiresAt: null });
  store.addRestriction({ identity: 'dev-2', kind: 'ban', alertId: ids.b, appliedAt: T0 + 60_000, expiresAt: T0 + 3_660_000, banKind: 'identity', banValue: 'dev-2' });
  const detect = parseDetectConfig({ actions: { reconnects: ['quarantine'], 'new-topic-prefix': ['ban', 'disconnect'] }, dryRun: true });
  defender = new StoreDefender(store, detect, FINDINGS);
  // The defender's facade type fits the admin API's port: this compiles only while the two agree.
  const facade: DefenderFacade = defender;
  const port: AdminServices['defender'] = facade;
  api = await startApi(port);
  bare = await startApi(undefined);
});

after(async () => {
  await api?.close();
  await bare?.close();
  store?.close();
  adminStore?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface AlertsBody {
  total: number;
  alerts: Array<{ id: number; rule: string; identity: string; state: string; items: string[]; actions: Array<{ action: string; outcome: string }> }>;
}

describe('defender admin API', () => {
  test('authentication comes first: no credential 401, a device certificate 403', async () => {
    assert.equal((await call({ path: '/api/v1/defender/alerts' })).status, 401);
    const device = await call({ path: '/api/v1/defender/alerts', client: pki.clients.device1! });
    assert.equal(device.status, 403);
  });

  test('GET alerts: newest first with total; filters by state, identity and rule; paging; a bearer token works too', async () => {
    const all = await op('/api/v1/defender/alerts');
    assert.equal(all.status, 200, all.text);
    const body = all.json as unknown as AlertsBody;
    assert.equal(body.total, 3);
    assert.deepEqual(body.alerts.map((a) => a.id), [ids.c, ids.b, ids.a]);
    assert.deepEqual(body.alerts[2]!.actions, [{ action: 'quarantine', outcome: 'applied' }]);
    assert.deepEqual(body.alerts[1]!.items, ['cmd']);

    const ofDev1 = (await call({ path: '/api/v1/defender/alerts?identity=dev-1&state=active', token })).json as unknown as AlertsBody;
    assert.deepEqual(ofDev1.alerts.map((a) => a.id), [ids.a]);
    const byRule = (await op('/api/v1/defender/alerts?rule=new-topic-prefix')).json as unknown as AlertsBody;
    assert.deepEqual(byRule.alerts.map((a) => a.identity), ['dev-2']);
    const cleared = (await op('/api/v1/defender/alerts?state=cleared')).json as unknown as AlertsBody;
    assert.deepEqual(cleared.alerts.map((a) => a.id), [ids.c]);
    const page = (await op('/api/v1/defender/alerts?offset=1&limit=1')).json as unknown as AlertsBody;
    assert.equal(page.total, 3);
    assert.deepEqual(page.alerts.map((a) => a.id), [ids.b]);
  });

  test('GET alerts: bad query values are 400 with the JSON error shape', async () => {
    const cases: Array<[string, RegExp]> = [
      ['state=open', /^query\.state: /],
      ['limit=0', /^query\.limit: /],
      ['limit=1001', /^query\.limit: /],
      ['limit=ten', /^query\.limit: /],
      ['offset=-1', /^query\.offset: /],
      ['identity=', /^query\.identity: /],
      ['colour=red', /^query: .*colour/],
    ];
    for (const [q, message] of cases) {
      const r = await op(`/api/v1/defender/alerts?${q}`);
      assert.equal(r.status, 400, q);
      assert.match(r.json.error ?? '', message, q);
    }
  });

  test('GET alerts/:id: the alert; 404 for none; 400 for a bad id', async () => {
    const one = await op(`/api/v1/defender/alerts/${ids.b}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.rule, 'new-topic-prefix');
    assert.equal(one.json.identity, 'dev-2');
    assert.equal(one.json.raisedAt, T0 + 60_000);
    const missing = await op('/api/v1/defender/alerts/99999');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error, 'no alert with id 99999');
    for (const bad of ['0', 'abc', '-3', '1.5']) {
      const r = await op(`/api/v1/defender/alerts/${bad}`);
      assert.equal(r.status, 400, bad);
      assert.match(r.json.error ?? '', /alert id must be a positive integer/);
    }
  });

  test('GET restrictions: those in force, oldest first', async () => {
    const r = await op('/api/v1/defender/restrictions');
    assert.equal(r.status, 200);
    const list = r.json.restrictions as Array<{ identity: string; kind: string; banValue?: string }>;
    assert.deepEqual(list.map((x) => `${x.identity}:${x.kind}`), ['dev-1:quarantine', 'dev-2:ban']);
    assert.equal(list[1]!.banValue, 'dev-2');
  });

  test('GET rules: the parsed config with each rule’s actions', async () => {
    const r = await op('/api/v1/defender/rules');
    assert.equal(r.status, 200);
    assert.equal(r.json.dryRun, true);
    assert.equal(r.json.windowSeconds, 30);
    assert.equal((r.json.rules as unknown[]).length, 9);
    const actions = r.json.actions as Record<string, string[]>;
    assert.deepEqual(actions['reconnects'], ['alert', 'quarantine']);
    assert.deepEqual(actions['new-topic-prefix'], ['alert', 'disconnect', 'ban']);
    assert.deepEqual(actions['authz-denials'], ['alert']);
  });

  test('PUT rules replaces rules and actions at run time (recorded); a misspelt key is a 400; DELETE goes back to the config', async () => {
    changes.length = 0;
    const doc = { rules: [{ kind: 'static', name: 'chatty', metric: 'messagesSent', operator: 'gt', value: 100 }], actions: { chatty: ['throttle'] } };
    const put = await op('/api/v1/defender/rules', { method: 'PUT', body: doc });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json.source, 'api');
    assert.equal(put.json.setBy, 'certificate:op1');
    assert.deepEqual((put.json.rules as Array<{ name: string }>).map((r) => r.name), ['chatty']);
    assert.deepEqual((put.json.actions as Record<string, string[]>).chatty, ['alert', 'throttle']);
    assert.equal((await op('/api/v1/defender/rules')).json.source, 'api');
    const bad = await op('/api/v1/defender/rules', { method: 'PUT', body: { rules: [{ kind: 'static', name: 'x', metric: 'connects', operator: 'gt', value: 1, treshold: 3 }] } });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /treshold|Unrecognized/);
    const reset = await op('/api/v1/defender/rules', { method: 'DELETE' });
    assert.equal(reset.status, 200, reset.text);
    assert.equal(reset.json.source, 'config');
    assert.equal((reset.json.rules as unknown[]).length, 9);
    assert.deepEqual(
      changes.map((c) => `${c.action}:${c.outcome}`),
      ['defender.rules.set:ok', 'defender.rules.set:failed', 'defender.rules.reset:ok'],
    );
  });

  test('POST release: lifts the identity, answers {alerts, restrictions}, recorded as an admin change; again 404', async () => {
    changes.length = 0;
    const r = await op('/api/v1/defender/release', { method: 'POST', body: { identity: 'dev-1' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.alerts, 1, 'the active alert of dev-1 (the cleared one stays cleared)');
    const lifted = r.json.restrictions as Array<{ kind: string; releasedBy: string }>;
    assert.deepEqual(lifted.map((x) => `${x.kind}:${x.releasedBy}`), ['quarantine:certificate:op1']);
    assert.equal(store.getAlert(ids.a!)?.state, 'released');
    assert.deepEqual(store.activeRestrictions().map((x) => x.identity), ['dev-2']);
    assert.deepEqual(
      changes.map((c) => ({ action: c.action, target: c.target, outcome: c.outcome, actor: `${c.actor.kind}:${c.actor.name}`, detail: c.detail })),
      [{ action: 'defender.release', target: 'dev-1', outcome: 'ok', actor: 'certificate:op1', detail: { alerts: 1, restrictions: ['quarantine'] } }],
    );

    const again = await call({ path: '/api/v1/defender/release', method: 'POST', body: { identity: 'dev-1' }, token });
    assert.equal(again.status, 404);
    assert.equal(again.json.error, 'nothing to release for dev-1');
    assert.equal(changes[1]?.outcome, 'not-found');
    assert.equal(changes[1]?.actor.kind, 'token');
  });

  test('POST release: a missing or bad identity is 400 and releases nothing', async () => {
    const before = store.activeRestrictions().length;
    const cases: Array<[Partial<AdminCall>, RegExp]> = [
      [{}, /^body: /],
      [{ body: {} }, /^body\.identity: /],
      [{ body: { identity: '' } }, /^body\.identity: /],
      [{ body: { identity: 42 } }, /^body\.identity: /],
      [{ body: { identity: 'dev\n2' } }, /^body\.identity: must not contain control characters/],
      [{ body: { identity: 'dev-2', extra: true } }, /^body: .*extra/],
      [{ rawBody: '{"identity":' }, /not valid JSON/],
    ];
    for (const [extra, message] of cases) {
      const r = await op('/api/v1/defender/release', { method: 'POST', ...extra });
      assert.equal(r.status, 400, JSON.stringify(extra));
      assert.match(r.json.error ?? '', message, JSON.stringify(extra));
    }
    assert.equal(store.activeRestrictions().length, before);
  });

  test('audit: GET is 404 with a clear message before the first run; POST runs one and answers the report; GET then returns it', async () => {
    const none = await op('/api/v1/defender/audit');
    assert.equal(none.status, 404);
    assert.match(none.json.error ?? '', /no security audit has run on this broker yet; POST \/api\/v1\/defender\/audit runs one/);

    const ran = await op('/api/v1/defender/audit', { method: 'POST' });
    assert.equal(ran.status, 200, ran.text);
    assert.deepEqual((ran.json.findings as Finding[]).map((f) => f.check), ['plaintext-listener', 'root-key-online']);
    assert.deepEqual(ran.json.counts, { low: 1, medium: 0, high: 1, critical: 0 });
    assert.deepEqual(defender.auditors, ['certificate:op1']);

    const last = await call({ path: '/api/v1/defender/audit', token });
    assert.equal(last.status, 200);
    assert.equal(last.json.checkedAt, ran.json.checkedAt);
    assert.equal((await op('/api/v1/defender/audit', { method: 'POST', body: { now: true } })).status, 400);
    assert.equal((await op('/api/v1/defender/audit', { method: 'DELETE' })).status, 405);
  });

  test('without a defender every route answers 501', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/api/v1/defender/alerts'],
      ['GET', '/api/v1/defender/alerts/1'],
      ['GET', '/api/v1/defender/restrictions'],
      ['POST', '/api/v1/defender/release', { identity: 'dev-1' }],
      ['GET', '/api/v1/defender/rules'],
      ['GET', '/api/v1/defender/audit'],
      ['POST', '/api/v1/defender/audit'],
    ];
    for (const [method, path, body] of routes) {
      const r = await call({ method, path, client: operator, ...(body !== undefined ? { body } : {}) }, bare);
      assert.equal(r.status, 501, `${method} ${path}`);
      assert.match(r.json.error ?? '', /not available on this broker/);
    }
  });
});
