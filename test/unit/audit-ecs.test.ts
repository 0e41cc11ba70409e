/**
 * The ECS mapping of every security event type and the RFC 5424 / RFC 6587 formatting of
 * audit records, on hand-built records (no sockets: the integration test sends them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CertificateSummary, SecurityEvent, SecurityEventType } from '../../src/core/security-events.js';
import { auditSeverity, ECS_VERSION, toEcs } from '../../src/security/audit/ecs.js';
import { chainRecord, type AuditRecord } from '../../src/security/audit/record.js';
import { escapeSdValue, formatSyslog, octetCounted, priority, SD_ID, structuredData, UDP_MAX_BYTES } from '../../src/server/audit/syslog-format.js';
import { at, deframeOctetCounted, parseSyslog } from '../helpers/syslog-collector.js';

const TS = Date.UTC(2026, 10, 26, 12, 0, 0, 123);

const CERT: CertificateSummary = {
  serialNumber: '0a1b2c3d',
  fingerprint256: 'ab:cd:ef:01:23',
  commonName: 'sensor-7',
  issuer: 'CN=Bastion Test CA',
  subject: 'CN=sensor-7, OU=devices',
  sans: { dns: ['sensor-7.local'], uri: ['spiffe://bastion/sensor-7'], ip: ['10.0.0.7'], email: [] },
};

/** One event of every type: adding a type to SecurityEvent breaks this until it is listed. */
const EVENTS: { [K in SecurityEventType]: Extract<SecurityEvent, { type: K }> } = {
  'connection.accepted': {
    type: 'connection.accepted',
    listener: 'mqtts',
    remoteAddress: '::ffff:192.0.2.10',
    clientId: 'sensor-7',
    principal: 'sensor-7',
    method: 'certificate',
    protocolVersion: 5,
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', group: 'X25519MLKEM768', resumed: true },
    certificate: CERT,
  },
  'connection.refused': {
    type: 'connection.refused',
    stage: 'tls',
    listener: 'mqtts',
    remoteAddress: '2001:db8::1',
    reasonCode: 0x87,
    reason: 'certificate revoked',
    tls: { version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256', group: 'X25519', resumed: false },
    certificate: CERT,
  },
  'auth.failure': { type: 'auth.failure', listener: 'mqtt', remoteAddress: '198.51.100.4', clientId: 'c1', username: 'alice', provider: 'password', reasonCode: 0x86, reason: 'bad user name or password' },
  'authz.denied': { type: 'authz.denied', clientId: 'c2', principal: 'bob', remoteAddress: '198.51.100.5', action: 'publish', topic: 'plant/1/valve', reason: 'no rule allows' },
  'limit.hit': { type: 'limit.hit', limit: 'publish-rate', listener: 'mqtt', remoteAddress: '198.51.100.6', clientId: 'c3', action: 'rejected', count: 42 },
  'client.disconnected': { type: 'client.disconnected', clientId: 'c4', remoteAddress: '198.51.100.7', listener: 'mqtt', reasonCode: 0x8a, reason: 'banned' },
  'ban.added': { type: 'ban.added', kind: 'ip', value: '203.0.113.9', reason: 'brute force', createdBy: 'auto', expiresAt: TS + 60_000, auto: true },
  'ban.removed': { type: 'ban.removed', kind: 'username', value: 'mallory', removedBy: 'admin:ops' },
  'revocation.applied': { type: 'revocation.applied', listener: 'mqtts', disconnected: ['c5', 'c6'] },
  'admin.change': { type: 'admin.change', actor: 'token:ci', remoteAddress: '127.0.0.1', action: 'acl.rule.add', target: 'role:sensors', outcome: 'ok', detail: { rule: { allow: true }, n: 1 } },
  provisioning: { type: 'provisioning', action: 'register', outcome: 'refused', requester: 'claim:0A1B', clientId: 'factory-7', template: 'sensor', errorCode: 'InvalidParameters', reason: 'parameter "serialNumber" is required' },
  job: { type: 'job', action: 'TIMED_OUT', actor: 'service', jobId: 'fw-2', identity: 'sensor-0042', executionNumber: 1, retried: true },
  campaign: { type: 'campaign', action: 'aborted', campaignId: 'cmp-1', jobId: 'cmp-1-job', stage: 2, devices: 17, reason: 'abort rule failed>5% after 20: 3 of 20 terminal device(s) failed (15%)' },
  'defender.alarm': { type: 'defender.alarm', alertId: 12, rule: 'authz-denials', identity: 'sensor-7', role: 'device', state: 'ALARM', value: 40, threshold: 5, node: 'node-1' },
  'defender.action': { type: 'defender.action', alertId: 12, action: 'quarantine', identity: 'sensor-7', rule: 'authz-denials', outcome: 'failed', actor: 'defender', detail: 'no such client' },
  'defender.audit': { type: 'defender.audit', trigger: 'schedule', findings: 2, counts: { low: 1, medium: 0, high: 1, critical: 0 }, checks: ['plaintext-listener', 'root-key-online'] },
  'tls.handshake': { type: 'tls.handshake', listener: 'mqtts', remoteAddress: '192.0.2.20', ok: false, resumed: false, reason: 'unknown ca' },
};

function record(event: SecurityEvent, seq = 7): AuditRecord {
  const prev = seq === 1 ? null : { seq: seq - 1, hash: 'f'.repeat(64) };
  return chainRecord(prev, TS, event);
}

/** What each type must categorize as: [categories, types, outcome]. */
const EXPECTED: Record<SecurityEventType, [string[], string[], string]> = {
  'connection.accepted': [['authentication', 'network', 'session'], ['start', 'connection', 'allowed'], 'success'],
  'connection.refused': [['network'], ['connection', 'denied'], 'failure'],
  'auth.failure': [['authentication'], ['start'], 'failure'],
  'authz.denied': [['network'], ['access', 'denied'], 'failure'],
  'limit.hit': [['intrusion_detection', 'network'], ['denied'], 'failure'],
  'client.disconnected': [['network', 'session'], ['connection', 'end'], 'success'],
  'ban.added': [['configuration', 'iam'], ['creation', 'change'], 'success'],
  'ban.removed': [['configuration', 'iam'], ['deletion', 'change'], 'success'],
  'revocation.applied': [['iam', 'network'], ['change', 'end'], 'success'],
  'admin.change': [['configuration', 'iam'], ['change'], 'success'],
  provisioning: [['iam', 'configuration'], ['denied'], 'failure'],
  job: [['configuration'], ['change'], 'failure'],
  campaign: [['configuration'], ['change'], 'failure'],
  'defender.alarm': [['intrusion_detection'], ['indicator'], 'failure'],
  'defender.action': [['intrusion_detection'], ['change', 'denied'], 'failure'],
  'defender.audit': [['configuration'], ['info'], 'failure'],
  'tls.handshake': [['network'], ['protocol', 'denied'], 'failure'],
};

const ECS_CATEGORIES = new Set(['authentication', 'configuration', 'iam', 'intrusion_detection', 'network', 'session']);
const ECS_TYPES = new Set(['access', 'admin', 'allowed', 'change', 'connection', 'creation', 'deletion', 'denied', 'end', 'error', 'indicator', 'info', 'protocol', 'start']);

test('every event type maps to an ECS event with the chain, categorization and base fields', () => {
  for (const [type, event] of Object.entries(EVENTS) as Array<[SecurityEventType, SecurityEvent]>) {
    const r = record(event);
    const doc = toEcs(r, { hostname: 'broker-1' });
    assert.equal(at(doc, '@timestamp'), '2026-11-26T12:00:00.123Z', type);
    assert.equal(at(doc, 'ecs.version'), ECS_VERSION);
    assert.equal(at(doc, 'event.kind'), 'event');
    assert.equal(at(doc, 'event.action'), type);
    assert.equal(at(doc, 'event.sequence'), 7);
    assert.equal(at(doc, 'event.hash'), r.hash);
    assert.equal(at(doc, 'bastion.audit.seq'), 7);
    assert.equal(at(doc, 'bastion.audit.hash'), r.hash);
    assert.equal(at(doc, 'bastion.audit.prev_hash'), 'f'.repeat(64));
    assert.equal(at(doc, 'observer.type'), 'mqtt-broker');
    assert.equal(at(doc, 'observer.name'), 'broker-1');
    assert.equal(at(doc, 'service.name'), 'bastion');
    const [categories, types, outcome] = EXPECTED[type];
    assert.deepEqual(at(doc, 'event.category'), categories, type);
    assert.deepEqual(at(doc, 'event.type'), types, type);
    assert.equal(at(doc, 'event.outcome'), outcome, type);
    for (const c of categories) assert.ok(ECS_CATEGORIES.has(c), `${c} is an ECS category`);
    for (const t of types) assert.ok(ECS_TYPES.has(t), `${t} is an ECS event type`);
    assert.equal(typeof at(doc, 'message'), 'string');
    assert.equal(at(doc, 'event.severity'), auditSeverity(event));
    // Plain JSON: survives a round trip unchanged (no undefined, no Dates, no bigint).
    assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
  }
});

test('connection.accepted carries TLS and client certificate fields in ECS form', () => {
  const doc = toEcs(record(EVENTS['connection.accepted']));
  assert.equal(at(doc, 'source.ip'), '192.0.2.10', 'IPv4-mapped address reported as IPv4');
  assert.equal(at(doc, 'source.address'), '::ffff:192.0.2.10');
  assert.equal(at(doc, 'user.name'), 'sensor-7');
  assert.equal(at(doc, 'client.user.name'), 'sensor-7');
  assert.equal(at(doc, 'tls.version'), '1.3');
  assert.equal(at(doc, 'tls.version_protocol'), 'tls');
  assert.equal(at(doc, 'tls.cipher'), 'TLS_AES_256_GCM_SHA384');
  assert.equal(at(doc, 'tls.curve'), 'X25519MLKEM768', 'the key-exchange group, hybrid post-quantum here');
  assert.equal(at(doc, 'tls.resumed'), true);
  assert.equal(at(doc, 'tls.established'), true);
  assert.equal(at(doc, 'tls.client.x509.serial_number'), '0A1B2C3D');
  assert.equal(at(doc, 'tls.client.hash.sha256'), 'ABCDEF0123');
  assert.deepEqual(at(doc, 'tls.client.x509.subject.common_name'), ['sensor-7']);
  assert.equal(at(doc, 'tls.client.x509.subject.distinguished_name'), 'CN=sensor-7, OU=devices');
  assert.equal(at(doc, 'tls.client.x509.issuer.distinguished_name'), 'CN=Bastion Test CA');
  assert.deepEqual(at(doc, 'tls.client.x509.alternative_names'), ['sensor-7.local', 'spiffe://bastion/sensor-7', '10.0.0.7']);
  assert.equal(at(doc, 'bastion.mqtt.client_id'), 'sensor-7');
  assert.equal(at(doc, 'bastion.mqtt.listener'), 'mqtts');
  assert.equal(at(doc, 'bastion.mqtt.protocol_version'), 5);
  assert.equal(at(doc, 'bastion.auth.method'), 'certificate');
});

test('refusals, failures and limits carry their reason, code and MQTT specifics', () => {
  const refused = toEcs(record(EVENTS['connection.refused']));
  assert.equal(at(refused, 'source.ip'), '2001:db8::1');
  assert.equal(at(refused, 'event.reason'), 'certificate revoked');
  assert.equal(at(refused, 'bastion.mqtt.reason_code'), 0x87);
  assert.equal(at(refused, 'bastion.mqtt.stage'), 'tls');
  assert.equal(at(refused, 'tls.version'), '1.2');
  assert.equal(at(refused, 'tls.client.x509.serial_number'), '0A1B2C3D');

  const auth = toEcs(record(EVENTS['auth.failure']));
  assert.equal(at(auth, 'user.name'), 'alice');
  assert.equal(at(auth, 'source.ip'), '198.51.100.4');
  assert.equal(at(auth, 'bastion.auth.provider'), 'password');
  assert.equal(at(auth, 'bastion.mqtt.reason_code'), 0x86);
  assert.equal(at(auth, 'event.reason'), 'bad user name or password');
  assert.equal(at(auth, 'tls'), undefined, 'no TLS fields on a plaintext listener');

  const authz = toEcs(record(EVENTS['authz.denied']));
  assert.equal(at(authz, 'bastion.mqtt.topic'), 'plant/1/valve');
  assert.equal(at(authz, 'bastion.mqtt.action'), 'publish');
  assert.equal(at(authz, 'user.name'), 'bob');

  const limit = toEcs(record(EVENTS['limit.hit']));
  assert.equal(at(limit, 'bastion.mqtt.limit'), 'publish-rate');
  assert.equal(at(limit, 'bastion.mqtt.count'), 42);
  assert.equal(at(limit, 'bastion.mqtt.action'), 'rejected');

  const ban = toEcs(record(EVENTS['ban.added']));
  assert.equal(at(ban, 'bastion.ban.kind'), 'ip');
  assert.equal(at(ban, 'bastion.ban.expires_at'), new Date(TS + 60_000).toISOString());
  assert.deepEqual(at(ban, 'related.ip'), ['203.0.113.9']);
  assert.equal(at(ban, 'user.name'), 'auto');

  const unban = toEcs(record(EVENTS['ban.removed']));
  assert.deepEqual(at(unban, 'related.user'), ['admin:ops', 'mallory']);

  const admin = toEcs(record(EVENTS['admin.change']));
  assert.equal(at(admin, 'user.name'), 'token:ci');
  assert.equal(at(admin, 'bastion.admin.action'), 'acl.rule.add');
  assert.deepEqual(at(admin, 'bastion.admin.detail'), { rule: { allow: true }, n: 1 });
  const failedAdmin = toEcs(record({ ...EVENTS['admin.change'], outcome: 'invalid' }));
  assert.equal(at(failedAdmin, 'event.outcome'), 'failure');

  const revoked = toEcs(record(EVENTS['revocation.applied']));
  assert.deepEqual(at(revoked, 'bastion.revocation.disconnected'), ['c5', 'c6']);

  const hs = toEcs(record(EVENTS['tls.handshake']));
  assert.equal(at(hs, 'tls.established'), false);
  assert.equal(at(hs, 'event.reason'), 'unknown ca');
  const okHs = toEcs(record({ ...EVENTS['tls.handshake'], ok: true, resumed: true }));
  assert.equal(at(okHs, 'event.outcome'), 'success');
  assert.deepEqual(at(okHs, 'event.type'), ['protocol', 'connection']);

  // A remote address that is not an IP stays out of the `ip`-typed field.
  const unknown = toEcs(record({ ...EVENTS['auth.failure'], remoteAddress: 'unknown' }));
  assert.equal(at(unknown, 'source.ip'), undefined);
  assert.equal(at(unknown, 'source.address'), 'unknown');
});

test('a summed record (denials, refusals at accept, TLS failures) carries its count; a single one has none', () => {
  const summed: SecurityEvent[] = [
    { ...EVENTS['authz.denied'], count: 17 },
    { ...EVENTS['connection.refused'], stage: 'accept', count: 17 },
    { ...EVENTS['tls.handshake'], count: 17 },
  ];
  for (const event of summed) {
    const doc = toEcs(record(event));
    assert.equal(at(doc, 'bastion.mqtt.count'), 17, event.type);
    assert.match(String(at(doc, 'message')), / 17×/, event.type);
  }
  for (const type of ['authz.denied', 'connection.refused', 'tls.handshake'] as const) {
    const doc = toEcs(record(EVENTS[type]));
    assert.equal(at(doc, 'bastion.mqtt.count'), undefined, type);
    assert.doesNotMatch(String(at(doc, 'message')), /×/, type);
  }
});

test('severity: refusals warn, broker actions notice, accepted connections inform', () => {
  assert.equal(auditSeverity(EVENTS['connection.accepted']), 6);
  for (const t of ['connection.refused', 'auth.failure', 'authz.denied', 'limit.hit', 'tls.handshake'] as const) assert.equal(auditSeverity(EVENTS[t]), 4, t);
  for (const t of ['client.disconnected', 'ban.added', 'ban.removed', 'revocation.applied', 'admin.change'] as const) assert.equal(auditSeverity(EVENTS[t]), 5, t);
});

const HEADER = { facility: 13, hostname: 'broker-1', appName: 'bastion', procId: '4242' };

test('RFC 5424: PRI, header fields, structured data with the chain, ECS JSON as MSG', () => {
  const r = record(EVENTS['auth.failure'], 12);
  const json = JSON.stringify(toEcs(r));
  const buf = formatSyslog(HEADER, auditSeverity(r.event), r, json);
  assert.notEqual(buf[0], 0xef, 'no BOM');
  const p = parseSyslog(buf);
  assert.equal(p.pri, 13 * 8 + 4);
  assert.equal(p.facility, 13);
  assert.equal(p.severity, 4);
  assert.equal(p.version, 1);
  assert.equal(p.timestamp, '2026-11-26T12:00:00.123Z');
  assert.equal(p.hostname, 'broker-1');
  assert.equal(p.appName, 'bastion');
  assert.equal(p.procId, '4242');
  assert.equal(p.msgId, 'auth.failure');
  assert.deepEqual(p.sd.get(SD_ID), { seq: '12', hash: r.hash, prevHash: 'f'.repeat(64), event: 'auth.failure' });
  assert.deepEqual(JSON.parse(p.msg), JSON.parse(json));
  assert.equal(priority(23, 7), 191);
  assert.equal(priority(0, 0), 0);
});

test('RFC 5424: SD values escape " \\ ] and header fields hold only printable ASCII', () => {
  assert.equal(escapeSdValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
  const r = record(EVENTS['limit.hit']);
  const sd = structuredData(r, { note: 'x"]\\y' });
  assert.ok(sd.includes('note="x\\"\\]\\\\y"'), sd);
  // A hostname with spaces and non-ASCII cannot break the header; an empty one is NILVALUE.
  const weird = parseSyslog(formatSyslog({ ...HEADER, hostname: 'my host\u00e9\n' }, 4, r, '{}'));
  assert.equal(weird.hostname, 'myhost');
  const nil = parseSyslog(formatSyslog({ ...HEADER, hostname: '' }, 4, r, '{}'));
  assert.equal(nil.hostname, '-');
  const parsed = parseSyslog(`<109>1 - - - - - ${sd} {}`);
  assert.equal(parsed.sd.get(SD_ID)?.note, 'x"]\\y');
  assert.equal(parsed.sd.get(SD_ID)?.seq, String(r.seq));
});

test('UDP size cap: a long MSG is cut at a UTF-8 boundary and marked truncated, the chain intact', () => {
  const r = record(EVENTS['admin.change']);
  const long = JSON.stringify({ text: 'é'.repeat(UDP_MAX_BYTES) });
  const buf = formatSyslog(HEADER, 5, r, long, UDP_MAX_BYTES);
  assert.ok(buf.length <= UDP_MAX_BYTES && buf.length >= UDP_MAX_BYTES - 1, String(buf.length));
  assert.equal(Buffer.from(buf.toString('utf8'), 'utf8').length, buf.length, 'no split character');
  const p = parseSyslog(buf);
  assert.equal(p.sd.get(SD_ID)?.truncated, '1');
  assert.equal(p.sd.get(SD_ID)?.hash, r.hash);
  const short = parseSyslog(formatSyslog(HEADER, 5, r, '{"a":1}', UDP_MAX_BYTES));
  assert.equal(short.sd.get(SD_ID)?.truncated, undefined);
  assert.equal(short.msg, '{"a":1}');
});

test('octet counting: LEN SP MSG with LEN in bytes, several frames in one stream', () => {
  const a = Buffer.from('<109>1 - - - - - - héllo', 'utf8');
  const b = Buffer.from('<110>1 - - - - - - x', 'utf8');
  const fa = octetCounted(a);
  assert.equal(fa.subarray(0, fa.indexOf(0x20)).toString(), String(a.length));
  assert.equal(a.length, 25, 'é counts two octets');
  const stream = Buffer.concat([fa, octetCounted(b), Buffer.from('12 <1')]);
  const { messages, rest } = deframeOctetCounted(stream);
  assert.deepEqual(messages.map((m) => m.toString()), [a.toString(), b.toString()]);
  assert.equal(rest.toString(), '12 <1');
});
