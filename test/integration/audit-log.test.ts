/**
 * The audit log of a real broker with real clients: an accepted mutual-TLS connection, an
 * authentication failure, a refused connection, TLS handshakes without a client
 * certificate (summed into one record) and a burst of denied publishes (summed the same
 * way) each end up in `<dataDir>/audit.db` as chained records with their fields; a clean
 * stop signs a final checkpoint; a restart continues the chain; the stored records reach
 * the JSON-lines export; with a built-in PKI the signer is issued by it and chains to its root.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient, Packet } from 'mqtt';
import type { SecurityEvent, SecurityEvents, SecurityEventType } from '../../src/core/security-events.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { HYBRID_SIGNATURES } from '../../src/pki/hybrid-signature.js';
import { verifyAuditLog } from '../../src/security/audit/verify.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { PkiService } from '../../src/server/pki-service.js';
import { SqliteAuditStore, type AuditRow } from '../../src/store/sqlite/audit-store.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, endQuietly, Inbox, withTimeout } from './support.js';
import { clientTls, tryMqttConnect } from './tls-support.js';

const WAIT = 5000;

/** Resolves once the broker emitted an event matching `match` (the audit side saw it too: same sync fan-out). */
function eventWaiter(events: SecurityEvents): { waitFor: (type: SecurityEventType, match?: (e: SecurityEvent) => boolean) => Promise<SecurityEvent>; stop: () => void } {
  const inbox = new Inbox<SecurityEvent>();
  const stop = events.on((e) => inbox.push(e));
  return {
    async waitFor(type, match = () => true) {
      const items = await inbox.waitFor((all) => all.some((e) => e.type === type && match(e)), WAIT, `a ${type} event`);
      return items.find((e) => e.type === type && match(e))!;
    },
    stop,
  };
}

function readRecords(dataDir: string): AuditRow[] {
  const store = SqliteAuditStore.open(join(dataDir, 'audit.db'), { create: false });
  try {
    return [...store.all()];
  } finally {
    store.close();
  }
}

function verifyDir(dataDir: string, anchorPem?: string) {
  const store = SqliteAuditStore.open(join(dataDir, 'audit.db'), { create: false });
  try {
    return verifyAuditLog({ records: store.all(), checkpoints: store.checkpoints(), signers: store.signers(), pqKeys: store.pqKeys(), hybrid: HYBRID_SIGNATURES, trustAnchorPem: anchorPem });
  } finally {
    store.close();
  }
}

function eventOf(row: AuditRow): Record<string, unknown> & { type: string } {
  return JSON.parse(row.eventJson) as Record<string, unknown> & { type: string };
}

describe('audit log of a running broker', () => {
  let b: TestBroker;
  let dir: string;
  let dataDir: string;
  let jsonlPath: string;
  let events: ReturnType<typeof eventWaiter>;
  const open: MqttClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-audit-'));
    dataDir = join(dir, 'data');
    jsonlPath = join(dir, 'audit.jsonl');
    b = await startTestBroker({ dataDir, plainAnonymous: false, authz: null, audit: { checkpointEvery: 1000, aggregateSeconds: 3600, jsonl: { path: jsonlPath } } });
    events = eventWaiter(b.server.broker.events);
  });
  after(async () => {
    await Promise.all(open.map((c) => endQuietly(c)));
    events.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes what is pending (and the aggregation window) and returns the records of `type` matching `match`. */
  function recorded(type: string, match: (e: Record<string, unknown>) => boolean = () => true): Array<{ row: AuditRow; event: Record<string, unknown> }> {
    b.server.audit.flush();
    return readRecords(dataDir)
      .map((row) => ({ row, event: eventOf(row) }))
      .filter((r) => r.row.type === type && r.event.type === type && match(r.event));
  }

  test('an accepted mutual-TLS connection: listener, source address, TLS version and cipher, certificate serial, fingerprint and SANs', async () => {
    const files = b.pki.clients.client1!;
    const c = await connectMqtt(`mqtts://127.0.0.1:${b.tlsPort}`, { clientId: 'client1', protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, files) });
    open.push(c);
    await events.waitFor('connection.accepted', (e) => e.type === 'connection.accepted' && e.clientId === 'client1');
    const [rec] = recorded('connection.accepted', (e) => e.clientId === 'client1');
    assert.ok(rec !== undefined, 'a connection.accepted record');
    const cert = new X509Certificate(readFileSync(files.cert));
    const e = rec.event as Extract<SecurityEvent, { type: 'connection.accepted' }>;
    assert.equal(rec.row.clientId, 'client1');
    assert.equal(e.listener, 'mqtts');
    assert.match(e.remoteAddress, /127\.0\.0\.1$/);
    assert.equal(e.principal, 'client1');
    assert.equal(e.tls?.version, 'TLSv1.3');
    assert.match(e.tls?.cipher ?? '', /^TLS_/);
    assert.equal(e.certificate?.serialNumber, cert.serialNumber);
    assert.equal(e.certificate?.fingerprint256, cert.fingerprint256);
    assert.ok(e.certificate?.sans !== undefined, 'the SANs travel with the record');
  });

  test('an authentication failure (anonymous on a listener that requires credentials)', async () => {
    const c = await import('mqtt').then((m) => m.default.connect(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'anon-1', protocolVersion: 5, reconnectPeriod: 0 }));
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    const emitted = await events.waitFor('auth.failure', (e) => e.type === 'auth.failure' && e.clientId === 'anon-1');
    await withTimeout(closed, WAIT, 'the refused client closing');
    c.end(true);
    const [rec] = recorded('auth.failure', (e) => e.clientId === 'anon-1');
    assert.ok(rec !== undefined, 'an auth.failure record');
    const e = rec.event as Extract<SecurityEvent, { type: 'auth.failure' }>;
    assert.equal(e.listener, 'plain');
    assert.match(e.remoteAddress, /127\.0\.0\.1$/);
    assert.equal(e.provider, (emitted as typeof e).provider);
    assert.ok([ReasonCode.NotAuthorized, ReasonCode.BadUserNameOrPassword].includes(e.reasonCode as 0x87 | 0x86), `reason code ${e.reasonCode}`);
    assert.ok(e.reason.length > 0);
  });

  test('a refused connection (a will the client may not publish): stage, reason code, TLS and certificate', async () => {
    const files = b.pki.clients.client2!;
    const out = await tryMqttConnect(b.tlsPort, {
      ...clientTls(b.pki, files),
      clientId: 'client2-will',
      protocolVersion: 5,
      will: { topic: 'devices/client1/status', payload: Buffer.from('gone'), qos: 0, retain: false },
    });
    assert.deepEqual(out, { connack: ReasonCode.NotAuthorized });
    await events.waitFor('connection.refused', (e) => e.type === 'connection.refused' && e.clientId === 'client2-will');
    const [rec] = recorded('connection.refused', (e) => e.clientId === 'client2-will');
    assert.ok(rec !== undefined, 'a connection.refused record');
    const e = rec.event as Extract<SecurityEvent, { type: 'connection.refused' }>;
    assert.equal(e.stage, 'connect');
    assert.equal(e.listener, 'mqtts');
    assert.match(e.remoteAddress, /127\.0\.0\.1$/);
    assert.equal(e.reasonCode, ReasonCode.NotAuthorized);
    assert.equal(e.certificate?.serialNumber, new X509Certificate(readFileSync(files.cert)).serialNumber);
    assert.equal(e.tls?.version, 'TLSv1.3');
    // The will's denial is its own record, before the refusal.
    const [will] = recorded('authz.denied', (x) => x.clientId === 'client2-will' && x.action === 'will');
    assert.ok(will !== undefined && will.row.seq < rec.row.seq);
  });

  test('TLS handshakes without the required client certificate are summed into one record per source and reason', async () => {
    const noCert = { ca: readFileSync(b.pki.caCert) };
    const failures = new Inbox<SecurityEvent>();
    const off = b.server.broker.events.on((e) => {
      if (e.type === 'tls.handshake' && !e.ok) failures.push(e);
    });
    try {
      for (let i = 0; i < 3; i++) {
        const out = await tryMqttConnect(b.tlsPort, { ...noCert, clientId: `nocert-${i}`, protocolVersion: 5 });
        assert.ok('closed' in out, JSON.stringify(out));
      }
      await failures.waitForCount(3, WAIT, 'three TLS handshake failures');
    } finally {
      off();
    }
    const recs = recorded('tls.handshake');
    assert.equal(recs.length, 1, JSON.stringify(recs.map((r) => r.event)));
    const e = recs[0]!.event as Extract<SecurityEvent, { type: 'tls.handshake' }>;
    assert.equal(e.ok, false);
    assert.equal(e.listener, 'mqtts');
    assert.equal(e.count, 3);
    assert.ok((e.reason ?? '').length > 0);
    // Successful handshakes (the mTLS clients above) are not audited.
    assert.equal(recorded('tls.handshake', (x) => x.ok === true).length, 0);
  });

  test('a burst of publishes denied by the default device policy is one record: action, topic, principal, count', async () => {
    const c = await connectMqtt(`mqtts://127.0.0.1:${b.tlsPort}`, { clientId: 'client2', protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, b.pki.clients.client2!) });
    open.push(c);
    const BURST = 25;
    const codes = new Inbox<number>();
    c.on('packetreceive', (p: Packet) => {
      if (p.cmd === 'puback') codes.push(p.reasonCode ?? 0);
    });
    for (let i = 0; i < BURST; i++) c.publish('devices/client1/cmd', `x${i}`, { qos: 1 }, () => undefined);
    const acks = await codes.waitFor((all) => all.length >= BURST, WAIT, `${BURST} PUBACKs`);
    assert.deepEqual(new Set(acks), new Set([ReasonCode.NotAuthorized]));
    const recs = recorded('authz.denied', (e) => e.clientId === 'client2' && e.action === 'publish');
    assert.equal(recs.length, 1, 'one record for the burst, not one per denied message');
    const rec = recs[0]!;
    assert.equal(rec.event.topic, 'devices/client1/cmd');
    assert.equal(rec.event.principal, 'client2');
    assert.equal(rec.event.count, BURST);
    assert.match(String(rec.event.remoteAddress), /127\.0\.0\.1$/);
  });

  test('records are consecutive and chained; the exports got them; a clean stop signs the last; a restart continues the chain', async () => {
    b.server.audit.flush();
    const before = readRecords(dataDir);
    assert.ok(before.length >= 5);
    before.forEach((r, i) => assert.equal(r.seq, i + 1));
    for (let i = 1; i < before.length; i++) assert.equal(before[i]!.prevHash, before[i - 1]!.hash);

    for (const c of open.splice(0)) await endQuietly(c);
    await b.server.stop();
    const stopped = verifyDir(dataDir);
    assert.equal(stopped.ok, true, stopped.problem?.message);
    assert.equal(stopped.lastSignedSeq, stopped.lastSeq, 'the shutdown checkpoint covers the last record');
    // The JSON-lines export received every stored record (its hash is in the file).
    const exported = readFileSync(jsonlPath, 'utf8');
    for (const r of readRecords(dataDir)) assert.ok(exported.includes(r.hash), `record ${r.seq} exported`);

    b = await startTestBroker({ dataDir, plainAnonymous: false, authz: null, audit: { checkpointEvery: 1000 } });
    events.stop();
    events = eventWaiter(b.server.broker.events);
    const last = readRecords(dataDir).at(-1)!;
    b.server.broker.events.emit({ type: 'ban.added', kind: 'ip', value: '192.0.2.7', reason: 'test', createdBy: 'test', expiresAt: null, auto: false });
    const [next] = recorded('ban.added');
    assert.equal(next?.row.seq, last.seq + 1);
    assert.equal(next?.row.prevHash, last.hash);
  });
});

test('with a built-in PKI the audit signer is issued by it (0600 key, in the inventory) and checkpoints chain to its root', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-pki-'));
  const dataDir = join(dir, 'data');
  const pki = await ensureDevPki(dataDir);
  const b = await startTestBroker({ dataDir, audit: { checkpointEvery: 2 } });
  try {
    for (let i = 0; i < 5; i++) {
      b.server.broker.events.emit({ type: 'ban.removed', kind: 'ip', value: `192.0.2.${i}`, removedBy: 'test' });
      b.server.audit.flush();
    }
  } finally {
    await b.stop();
  }
  try {
    const keyPath = join(dataDir, 'audit', 'signer.key');
    assert.equal(statSync(keyPath).mode & 0o777, 0o600);
    const signerCert = new X509Certificate(readFileSync(join(dataDir, 'audit', 'signer.crt')));
    assert.match(signerCert.subject, /CN=bastion-audit-signer/);
    assert.equal(signerCert.subject === signerCert.issuer, false, 'not self-signed');
    const service = await PkiService.open(pki.dir);
    try {
      assert.equal(service.show(signerCert.serialNumber).fingerprint256, signerCert.fingerprint256);
    } finally {
      service.close();
    }
    const root = readFileSync(pki.rootCert, 'utf8');
    const r = verifyDir(dataDir, root);
    assert.equal(r.ok, true, r.problem?.message);
    assert.ok(r.checkpoints >= 2);
    assert.deepEqual(r.signersUsed, [signerCert.fingerprint256]);
    // Another PKI's root does not vouch for it.
    const other = await ensureDevPki(join(dir, 'other'));
    const foreign = verifyDir(dataDir, readFileSync(other.rootCert, 'utf8'));
    assert.equal(foreign.problem?.kind, 'untrusted-signer');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
