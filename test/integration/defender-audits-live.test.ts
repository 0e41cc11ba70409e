/**
 * The security audit of a running broker (server/defender-audits.ts): a real broker with
 * the built-in PKI (test/helpers/provisioning-broker.ts), real MQTT.js clients over TLS with
 * certificates from that PKI, DefenderAudits built over the server's broker and its security
 * events. Each live check is made to fire by building its bad state for real; the schedule,
 * the audit log record and the metrics are checked on the same broker.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { BrokerApi } from '../../src/broker/api.js';
import type { BastionConfig } from '../../src/core/config.js';
import { CREATE_FROM_CSR_TOPIC } from '../../src/core/provisioning-topics.js';
import type { Logger } from '../../src/core/logger.js';
import type { AuditReport, Finding } from '../../src/defender/audit/index.js';
import { ClaimUseWatch } from '../../src/server/claim-use-watch.js';
import { DefenderAudits } from '../../src/server/defender-audits.js';
import { parseConfig } from '../../src/server/load-config.js';
import { pkiLayout } from '../../src/server/pki-layout.js';
import { PkiInventory } from '../../src/store/sqlite/pki-inventory.js';
import { SqliteAuditStore } from '../../src/store/sqlite/audit-store.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { parseExposition, sampleValue } from '../helpers/prom-text.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, endQuietly, pubackCode, run, withTimeout } from './support.js';

const WAIT = 10_000;

/** The config the helper's broker runs with (its listener and ACL), with `defender.audit` settings. */
function configOf(b: ProvisioningBroker, audit: Record<string, unknown> = {}): BastionConfig {
  const issued = join(b.pkiDir, 'issued');
  return parseConfig(
    {
      dataDir: b.dataDir,
      listeners: [
        {
          name: 'mqtts',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 0,
          tls: { cert: join(issued, 'broker.crt'), key: join(issued, 'broker.key'), ca: join(b.pkiDir, 'ca-chain.crt'), clientCerts: 'optional' },
          auth: { providers: ['certificate', 'provision-token'] },
        },
      ],
      authz: { policy: 'rules', roles: { sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] } }, bindings: [] },
      defender: { audit },
    },
    b.dir,
  ).config;
}

const has = (r: AuditReport, check: string, subject?: string): Finding | undefined => r.findings.find((f) => f.check === check && (subject === undefined || f.subject === subject));
const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toUpperCase();

describe('security audits of a running broker', () => {
  let b: ProvisioningBroker;
  let api: BrokerApi;
  let events: EventRecorder;
  let audits: DefenderAudits;
  let takeovers: Array<{ clientId: string; count: number; windowMs: number }> = [];
  const open: MqttClient[] = [];

  before(async () => {
    b = await startProvisioningBroker({ admin: {} });
    api = new BrokerApi(b.server.broker);
    events = new EventRecorder(b.server.broker.events);
    // In the server the detection runtime supplies the takeovers; here the test does (see conflicting-client-ids).
    audits = new DefenderAudits({ config: configOf(b), baseDir: b.dir, dataDir: b.dataDir, api, events: b.server.broker.events, takeovers: () => takeovers });
  });
  after(async () => {
    await Promise.all(open.map((c) => endQuietly(c)));
    await audits.stop();
    events.stop();
    await b.stop();
  });

  async function device(commonName: string, clientId = commonName, pem?: { cert: string; key: string }): Promise<{ client: MqttClient; cert: string; key: string }> {
    const files = pem ?? (await b.clientCert(commonName));
    const client = await b.connect({ clientId, cert: files.cert, key: files.key });
    open.push(client);
    return { client, ...files };
  }

  test('revoked-certificate-connected: a certificate revoked in the inventory while its client stays connected', async () => {
    const d = await device('dev-revoked');
    const serial = serialOf(d.cert);
    assert.equal(has(await audits.runAudit('operator', 'test'), 'revoked-certificate-connected'), undefined, 'not before the revocation');

    // How the state is made: the inventory row is marked revoked directly, without re-signing
    // crl.pem. The broker cuts revoked clients off when a listener loads a new CRL (and
    // `bastion cert revoke` writes one at once), so this is the state of a revocation whose
    // CRL has not reached this listener: a failed CRL write, a CRL imported from another node
    // not yet applied, or a listener that does not check revocation. The client stays connected.
    const inventory = PkiInventory.open(pkiLayout(b.pkiDir).inventory);
    try {
      assert.equal(inventory.revoke(serial, new Date(), 'keyCompromise').result, 'revoked');
    } finally {
      inventory.close();
    }
    assert.notEqual(api.clientView('dev-revoked'), null, 'still connected');

    const report = await audits.runAudit('operator', 'test');
    const f = has(report, 'revoked-certificate-connected', serial);
    assert.ok(f !== undefined, JSON.stringify(report.findings.map((x) => x.check)));
    assert.equal(f.severity, 'critical');
    assert.match(f.message, /client dev-revoked from /);
    assert.match(f.fix, /bastion clients kick dev-revoked/);
    const ev = await events.waitFor('defender.audit', (e) => e.checks.includes('revoked-certificate-connected'));
    assert.equal(ev.trigger, 'operator');
    assert.equal(ev.checks[0], 'revoked-certificate-connected', 'most severe first');
    assert.ok(ev.counts.critical >= 1);
    assert.equal(ev.findings, report.findings.length);
    assert.equal(audits.last, report);
    await endQuietly(d.client);
  });

  test('certificate-shared: one certificate on two connections with two client ids', async () => {
    const first = await device('dev-shared', 'dev-shared-a');
    assert.equal(has(await audits.runAudit('operator'), 'certificate-shared'), undefined, 'one connection: no finding');
    await device('dev-shared', 'dev-shared-b', first);
    const report = await audits.runAudit('operator');
    const f = has(report, 'certificate-shared', serialOf(first.cert));
    assert.ok(f !== undefined, JSON.stringify(report.findings.map((x) => x.check)));
    assert.equal(f.severity, 'critical');
    assert.match(f.message, /2 concurrent connections: dev-shared-a@.*, dev-shared-b@/);
  });

  test('conflicting-client-ids: takeovers supplied through the takeovers option (the detection runtime counts them)', async () => {
    // The option is the seam: the broker does not count takeovers itself, the detection
    // runtime does and hands them over. Below the storm threshold (5) nothing is reported.
    takeovers = [{ clientId: 'dev-flap', count: 4, windowMs: 30_000 }];
    assert.equal(has(await audits.runAudit('operator'), 'conflicting-client-ids'), undefined);
    takeovers = [{ clientId: 'dev-flap', count: 7, windowMs: 30_000 }];
    const f = has(await audits.runAudit('operator'), 'conflicting-client-ids', 'dev-flap');
    takeovers = [];
    assert.ok(f !== undefined);
    assert.equal(f.severity, 'high');
    assert.match(f.message, /taken over 7 times in 30 s/);
  });

  test('claim-used-outside-provisioning: a claim certificate publishing and subscribing to device topics', async () => {
    await audits.runAudit('operator'); // starts a fresh counting period
    const claim = await b.claim('sensor');
    const c = await b.connect({ clientId: 'claim-user', cert: claim.cert, key: claim.key });
    open.push(c);
    // A device certificate refused on another device's topic is not a claim's use.
    const other = await device('dev-nosy');
    assert.equal(await pubackCode(other.client, 'devices/someone-else/cmd', WAIT), 0x87);

    assert.equal(await pubackCode(c, 'devices/sensor-1/telemetry', WAIT), 0x87, 'the provisioning guard refuses it');
    await assert.rejects(c.subscribeAsync('devices/#', { qos: 1 }), /Not authorized/, 'subscription refused');
    // A provisioning topic is what a claim is for: not counted even when refused (a retained request).
    c.publish(CREATE_FROM_CSR_TOPIC, '{}', { qos: 1, retain: true }, () => undefined);
    await events.waitFor('authz.denied', (e) => e.clientId === 'claim-user' && e.topic === CREATE_FROM_CSR_TOPIC);
    await events.waitFor('authz.denied', (e) => e.clientId === 'claim-user' && e.topic === 'devices/#');

    const report = await audits.runAudit('operator');
    const found = report.findings.filter((f) => f.check === 'claim-used-outside-provisioning');
    assert.deepEqual(found.map((f) => f.subject), [claim.serialNumber.toUpperCase()]);
    assert.equal(found[0]!.severity, 'high');
    assert.match(found[0]!.message, /refused 2 time\(s\)/);
    assert.match(found[0]!.message, /devices\/sensor-1\/telemetry, devices\/#/);
    assert.match(found[0]!.message, /last as client claim-user/);
    assert.match(found[0]!.fix, new RegExp(`bastion provision claim revoke ${claim.serialNumber}`, 'i'));

    // Counted since the last audit: the next audit starts from zero.
    assert.equal(has(await audits.runAudit('operator'), 'claim-used-outside-provisioning'), undefined);
    await endQuietly(c);
  });

  test('the claim table is bounded: past its size, refusals are counted as untracked', async () => {
    const watch = new ClaimUseWatch(b.server.broker.events, api, 1);
    try {
      const one = await b.claim('sensor');
      const two = await b.claim('sensor');
      const c1 = await b.connect({ clientId: 'claim-one', cert: one.cert, key: one.key });
      const c2 = await b.connect({ clientId: 'claim-two', cert: two.cert, key: two.key });
      open.push(c1, c2);
      assert.equal(await pubackCode(c1, 'devices/x/y', WAIT), 0x87);
      assert.equal(await pubackCode(c2, 'devices/x/y', WAIT), 0x87);
      const counts = watch.take();
      assert.deepEqual(counts.claims.map((x) => x.serialNumber), [one.serialNumber.toUpperCase()]);
      assert.equal(counts.untracked, 1);
      await Promise.all([endQuietly(c1), endQuietly(c2)]);
    } finally {
      watch.stop();
    }
  });

  test('scheduled runs: every intervalSeconds, a failed run logged and the schedule going on', async () => {
    // A data directory of its own whose provisioning.db is not a database: the run fails
    // reading it, is logged, and the next run (once the file is gone) succeeds.
    const dir = mkdtempSync(join(tmpdir(), 'defender-audits-sched-'));
    const badDb = join(dir, 'provisioning.db');
    writeFileSync(badDb, 'not a database, '.repeat(512));
    let logged: (line: string) => void = () => undefined;
    const failed = new Promise<string>((resolve) => (logged = resolve));
    const logger: Logger = { debug() {}, info() {}, warn() {}, error: (obj, msg) => logged(`${msg ?? ''} ${JSON.stringify(obj)}`) };
    const sched = new DefenderAudits({ config: configOf(b, { intervalSeconds: 1 }), baseDir: b.dir, dataDir: dir, api, events: b.server.broker.events, logger });
    const before = events.of('defender.audit', (e) => e.trigger === 'schedule').length;
    try {
      sched.start();
      assert.match(await withTimeout(failed, WAIT, 'a failed scheduled run logged'), /scheduled security audit failed.*not a database/);
      assert.equal(sched.last, null);
      rmSync(badDb);
      const ev = await events.waitFor('defender.audit', (e) => e.trigger === 'schedule');
      assert.equal(events.of('defender.audit', (e) => e.trigger === 'schedule').length, before + 1);
      assert.notEqual(sched.last, null);
      assert.equal(ev.findings, sched.last!.findings.length);
      // And again, one interval later: the schedule re-arms after each run.
      await events.inbox.waitFor(() => events.of('defender.audit', (e) => e.trigger === 'schedule').length >= before + 2, WAIT, 'a second scheduled run');
    } finally {
      await sched.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('each run is a defender.audit record in audit.db and in the metrics', async () => {
    const report = await audits.runAudit('operator', 'alice');
    b.server.audit.flush();
    const store = SqliteAuditStore.open(b.server.audit.path, { create: false });
    let rows;
    try {
      rows = [...store.all()].filter((r) => r.type === 'defender.audit');
    } finally {
      store.close();
    }
    assert.ok(rows.length >= 2, `records: ${rows.length}`);
    const last = JSON.parse(rows[rows.length - 1]!.eventJson) as { trigger: string; findings: number; counts: Record<string, number>; checks: string[] };
    assert.equal(last.trigger, 'operator');
    assert.equal(last.findings, report.findings.length);
    assert.deepEqual(last.counts, report.counts);
    assert.ok(rows.some((r) => (JSON.parse(r.eventJson) as { trigger: string }).trigger === 'schedule'), 'the scheduled runs were recorded too');

    const token = await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'prometheus', '--data-dir', b.dataDir], { timeoutMs: 20_000 });
    assert.equal(token.code, 0, token.stderr);
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: b.adminPort!, servername: 'localhost', path: '/metrics', ca: b.caPem, agent: false, headers: { authorization: `Bearer ${token.stdout.trim()}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`/metrics: ${String(res.statusCode)}`))));
      });
      req.on('error', reject);
      req.end();
    });
    const families = parseExposition(text);
    const operatorRuns = events.of('defender.audit', (e) => e.trigger === 'operator').length;
    assert.equal(sampleValue(families, 'bastion_defender_audits_total', { trigger: 'operator' }), operatorRuns);
    assert.ok((sampleValue(families, 'bastion_defender_audits_total', { trigger: 'schedule' }) ?? 0) >= 2);
    for (const severity of ['low', 'medium', 'high', 'critical'] as const) {
      assert.equal(sampleValue(families, 'bastion_defender_audit_findings', { severity }), report.counts[severity], severity);
    }
  });
});
