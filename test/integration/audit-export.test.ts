/**
 * The syslog audit export over real sockets: a UDP collector (node:dgram), a TCP collector
 * that is stopped and restarted (and one that stops reading), a TLS collector with a
 * certificate from our PKI. Every message is parsed back (RFC 5424 header, SD params, ECS
 * JSON) rather than matched as text; util-linux logger(1) cross-checks the test parser.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { auditSchema, type AuditConfig } from '../../src/core/audit-config.js';
import { chainRecord, type AuditRecord } from '../../src/security/audit/record.js';
import { createAuditExports } from '../../src/server/audit/exports.js';
import { SD_ID, UDP_MAX_BYTES } from '../../src/server/audit/syslog-format.js';
import { createSyslogSink } from '../../src/server/audit/syslog-sink.js';
import { makeTestPki } from '../helpers/pki.js';
import { at, auditRecords, collect, listenOn, parseSyslog, tcpCollector, type ParsedSyslog } from '../helpers/syslog-collector.js';
import { Inbox } from './support.js';
import { RecordingLogger } from './tls-support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const BASE: AuditConfig = auditSchema.parse({ checkpointEvery: 1000, checkpointSeconds: 300, aggregateSeconds: 10 });

function assertEcsMessage(p: ParsedSyslog, r: AuditRecord, appName: string, facility: number): void {
  assert.equal(p.version, 1);
  assert.equal(p.facility, facility);
  assert.equal(p.appName, appName);
  assert.equal(p.msgId, r.event.type);
  assert.equal(p.procId, String(process.pid));
  assert.equal(p.timestamp, new Date(r.ts).toISOString());
  const sd = p.sd.get(SD_ID);
  assert.equal(sd?.seq, String(r.seq));
  assert.equal(sd?.hash, r.hash);
  assert.equal(sd?.prevHash, r.prevHash);
  const doc = JSON.parse(p.msg) as unknown;
  assert.equal(at(doc, 'event.action'), r.event.type);
  assert.equal(at(doc, 'event.sequence'), r.seq);
  assert.equal(at(doc, 'bastion.audit.hash'), r.hash);
  assert.equal(at(doc, 'bastion.audit.prev_hash'), r.prevHash);
  assert.equal(at(doc, 'observer.type'), 'mqtt-broker');
  switch (r.event.type) {
    case 'auth.failure':
      assert.equal(p.severity, 4);
      assert.equal(at(doc, 'event.outcome'), 'failure');
      assert.equal(at(doc, 'source.ip'), '127.0.0.2');
      assert.equal(at(doc, 'user.name'), 'alice');
      assert.equal(at(doc, 'event.reason'), r.event.reason);
      break;
    case 'connection.accepted':
      assert.equal(p.severity, 6);
      assert.equal(at(doc, 'event.outcome'), 'success');
      assert.equal(at(doc, 'source.ip'), '127.0.0.3');
      assert.equal(at(doc, 'tls.version'), '1.3');
      assert.equal(at(doc, 'tls.client.x509.serial_number'), '1F2E');
      assert.deepEqual(at(doc, 'tls.client.x509.alternative_names'), [r.event.certificate!.sans.uri[0]]);
      break;
    case 'limit.hit':
      assert.equal(p.severity, 4);
      assert.equal(at(doc, 'bastion.mqtt.count'), r.event.count);
      break;
    default:
      assert.fail(`unexpected ${r.event.type}`);
  }
}

test('UDP: one RFC 5424 datagram per record with header, SD chain params and ECS JSON; long ones capped', async () => {
  const udp = createSocket('udp4');
  const got = new Inbox<Buffer>();
  udp.on('message', (m) => got.push(m));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
  const port = udp.address().port;
  const logger = new RecordingLogger();
  const exp = createAuditExports({ ...BASE, syslog: { transport: 'udp', host: '127.0.0.1', port, appName: 'bastion-test', facility: 10 } }, (p) => p, logger);
  assert.ok(exp !== null);
  const rs = auditRecords(6);
  for (const r of rs) exp.write(r);
  // An admin change whose detail is bigger than a datagram may carry.
  const big = chainRecord(rs[5]!, Date.now(), { type: 'admin.change', actor: 'token:ci', remoteAddress: '127.0.0.1', action: 'acl.import', target: 'rules', outcome: 'ok', detail: { blob: 'é'.repeat(6000) } });
  exp.write(big);
  await got.waitFor((m) => m.length === 7, 5000, 'seven datagrams');
  const parsed = got.items.map((m) => parseSyslog(m));
  // UDP on loopback keeps order in practice, but order is not what is asserted: match by seq.
  for (const r of rs) {
    const p = parsed.find((x) => x.sd.get(SD_ID)?.seq === String(r.seq));
    assert.ok(p, `seq ${r.seq} arrived`);
    assertEcsMessage(p, r, 'bastion-test', 10);
  }
  const bigMsg = got.items.find((m) => parseSyslog(m).sd.get(SD_ID)?.seq === String(big.seq))!;
  assert.ok(bigMsg.length <= UDP_MAX_BYTES, `datagram ${bigMsg.length} octets`);
  const bigParsed = parseSyslog(bigMsg);
  assert.equal(bigParsed.sd.get(SD_ID)?.truncated, '1');
  assert.equal(bigParsed.sd.get(SD_ID)?.hash, big.hash);
  assert.equal(bigParsed.severity, 5);
  await exp.close();
  udp.close();
});

test('TCP: octet-counted messages; a restarted collector receives what was written while it was down', async () => {
  const first = await tcpCollector();
  const port = first.port;
  const logger = new RecordingLogger();
  const exp = createAuditExports({ ...BASE, syslog: { transport: 'tcp', host: '127.0.0.1', port, appName: 'bastion', facility: 13 } }, (p) => p, logger);
  assert.ok(exp !== null);
  const rs = auditRecords(9);
  for (const r of rs.slice(0, 3)) exp.write(r);
  await first.messages.waitFor((m) => m.length === 3, 5000, 'three messages');
  first.messages.items.forEach((p, i) => assertEcsMessage(p, rs[i]!, 'bastion', 13));

  await first.close();
  await logger.waitFor('audit syslog (tcp): connection lost, buffering');
  // Written while nobody listens: held in the bounded buffer.
  for (const r of rs.slice(3)) exp.write(r);
  await logger.waitFor('audit syslog (tcp): connection failed, retrying', { code: 'ECONNREFUSED' });

  const second = await tcpCollector(port);
  await second.messages.waitFor((m) => m.length === 6, 15_000, 'six buffered messages after reconnect');
  assert.deepEqual(
    second.messages.items.map((p) => p.sd.get(SD_ID)?.seq),
    rs.slice(3).map((r) => String(r.seq)),
    'in order, none lost, none twice',
  );
  second.messages.items.forEach((p, i) => assertEcsMessage(p, rs[3 + i]!, 'bastion', 13));
  const reconnected = await logger.waitFor('audit syslog (tcp): connected');
  assert.equal(reconnected.obj.dropped, 0);
  // The refused attempts were logged once, not once per retry.
  assert.equal(logger.lines.items.filter((l) => l.msg === 'audit syslog (tcp): connection failed, retrying').length, 1);
  await exp.close();
  await second.close();
});

test('TCP: the buffer while disconnected is bounded; drops are counted and logged', async () => {
  const first = await tcpCollector();
  const logger = new RecordingLogger();
  const sink = createSyslogSink({ transport: 'tcp', host: '127.0.0.1', port: first.port, appName: 'bastion', facility: 13 }, (p) => p, logger, { hostname: 'h', maxBuffered: 3, minBackoffMs: 20 });
  await first.close();
  // Nobody listens from the start: the first connect is refused and the sink retries.
  await logger.waitFor('audit syslog (tcp): connection failed, retrying', { code: 'ECONNREFUSED' });
  const rs = auditRecords(10);
  for (const r of rs) sink.write(r, 4, '{}');
  const full = await logger.waitFor('audit syslog (tcp): buffer full, dropping messages');
  assert.equal(full.level, 'error');
  assert.equal(logger.lines.items.filter((l) => l.msg === 'audit syslog (tcp): buffer full, dropping messages').length, 1, 'logged once per outage');
  const second = await tcpCollector(first.port);
  await second.messages.waitFor((m) => m.length === 3, 15_000, 'the three buffered messages');
  assert.deepEqual(second.messages.items.map((p) => p.sd.get(SD_ID)?.seq), ['1', '2', '3']);
  const back = await logger.waitFor('audit syslog (tcp): connected');
  assert.equal(back.obj.dropped, 7);
  await sink.close();
  await second.close();
});

test('TCP: a collector that stops reading costs a bounded buffer, then gets everything up to the drops, in order', async () => {
  const messages = new Inbox<ParsedSyslog>();
  const server = createServer();
  const accepted = new Inbox<Socket>();
  const sockets = collect(server, messages);
  server.on('connection', (s: Socket) => accepted.push(s));
  const port = await listenOn(server);
  const logger = new RecordingLogger();
  const sink = createSyslogSink({ transport: 'tcp', host: '127.0.0.1', port, appName: 'bastion', facility: 13 }, (p) => p, logger, { hostname: 'h', maxBuffered: 50 });
  try {
    const total = 400;
    const rs = auditRecords(total);
    // The first message arriving proves the sink is connected and writing straight through.
    sink.write(rs[0]!, 4, '{}');
    await messages.waitFor((m) => m.length === 1, 5000, 'the first message');
    const socket = accepted.items[0]!;
    socket.pause();
    // 64 KiB per message, 25 MiB in all: far more than the kernel's socket buffers take.
    const json = JSON.stringify({ pad: 'x'.repeat(64 * 1024) });
    for (const r of rs.slice(1)) sink.write(r, 4, json);
    await logger.waitFor('audit syslog (tcp): buffer full, dropping messages');
    socket.resume();
    const caught = await logger.waitFor('audit syslog (tcp): caught up after dropping messages', {}, 30_000);
    const dropped = caught.obj.dropped as number;
    assert.ok(dropped > 0 && dropped < total, String(dropped));
    await messages.waitFor((m) => m.length === total - dropped, 30_000, 'every message not dropped');
    // What arrived is a prefix of what was written: nothing reordered, nothing after a drop.
    assert.deepEqual(messages.items.map((p) => Number(p.sd.get(SD_ID)?.seq)), Array.from({ length: total - dropped }, (_, i) => i + 1));
    assert.equal(logger.lines.items.filter((l) => l.msg === 'audit syslog (tcp): buffer full, dropping messages').length, 1);
  } finally {
    await sink.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('TLS: RFC 5425 to a collector with a certificate from our PKI; an untrusted collector gets nothing', async () => {
  const pki = await makeTestPki(join(dir, 'pki'));
  const messages = new Inbox<ParsedSyslog>();
  const server = createTlsServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) });
  const protocols: string[] = [];
  server.on('secureConnection', (s: TLSSocket) => protocols.push(s.getProtocol() ?? ''));
  const sockets = collect(server, messages, 'secureConnection');
  const port = await listenOn(server);

  const logger = new RecordingLogger();
  const exp = createAuditExports({ ...BASE, syslog: { transport: 'tls', host: 'localhost', port, ca: 'pki/ca.crt', appName: 'bastion', facility: 13 } }, (p) => join(dir, p), logger);
  assert.ok(exp !== null);
  const rs = auditRecords(3);
  for (const r of rs) exp.write(r);
  await messages.waitFor((m) => m.length === 3, 10_000, 'three messages over TLS');
  messages.items.forEach((p, i) => assertEcsMessage(p, rs[i]!, 'bastion', 13));
  assert.ok(protocols.every((p) => p === 'TLSv1.3' || p === 'TLSv1.2'), protocols.join());
  await exp.close();

  // Without our CA (system store) the collector's certificate is not trusted: nothing is sent.
  const untrusting = new RecordingLogger();
  const before = messages.items.length;
  const exp2 = createAuditExports({ ...BASE, syslog: { transport: 'tls', host: 'localhost', port, appName: 'bastion', facility: 13 } }, (p) => p, untrusting);
  exp2!.write(auditRecords(1)[0]!);
  const refused = await untrusting.waitFor('audit syslog (tls): connection failed, retrying');
  assert.match(String(refused.obj.code), /CERT|SIGNATURE|ISSUER/);
  await exp2!.close();
  assert.equal(messages.items.length, before, 'no message reached the untrusted collector');

  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

test('TLS: an unreadable ca file is a startup error with ERR_CONFIG', () => {
  assert.throws(
    () => createAuditExports({ ...BASE, syslog: { transport: 'tls', host: 'localhost', port: 6514, ca: 'missing.pem', appName: 'bastion', facility: 13 } }, (p) => join(dir, p), new RecordingLogger()),
    (err: unknown) => (err as { code?: string }).code === 'ERR_CONFIG' && /missing\.pem/.test((err as Error).message),
  );
  assert.equal(createAuditExports(BASE, (p) => p, new RecordingLogger()), null, 'nothing configured: no exports');
});

test('our parser reads util-linux logger(1) RFC 5424 octet-counted output (cross-check of the test parser)', { skip: spawnSync('logger', ['--help']).status !== 0 }, async () => {
  const c = await tcpCollector();
  const res = spawnSync('logger', ['--rfc5424', '--octet-count', '-T', '-n', '127.0.0.1', '-P', String(c.port), '-t', 'bastion', '-p', 'local0.warning', '--msgid', 'auth.failure', '--sd-id', SD_ID, '--sd-param', 'seq="5"', '--sd-param', 'hash="ab\\"c\\]"', '{"a":1}']);
  assert.equal(res.status, 0, res.stderr.toString());
  await c.messages.waitFor((m) => m.length === 1, 5000, 'logger message');
  const p = c.messages.items[0]!;
  assert.equal(p.facility, 16);
  assert.equal(p.severity, 4);
  assert.equal(p.msgId, 'auth.failure');
  assert.equal(p.sd.get(SD_ID)?.seq, '5');
  assert.equal(p.sd.get(SD_ID)?.hash, 'ab"c]');
  assert.equal(p.msg, '{"a":1}');
  await c.close();
});

