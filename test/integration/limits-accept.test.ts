/**
 * Connection limits at accept, with real sockets: a flood from one address is cut before
 * the TLS handshake (no ServerHello) while another address still connects; per-address
 * concurrency, listener and broker caps, deny and allow lists, a WebSocket listener, slots
 * given back on close; the per-listener maximum packet size; the security events each
 * refusal and each TLS handshake becomes. Client source addresses: any 127.0.0.0/8
 * address works (FIELD-NOTES), so 127.0.0.2 is "another IP".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, run, withTimeout } from './support.js';
import { sClient } from './tls-support.js';

interface LimitsBroker {
  server: BastionServer;
  port(name: string): number;
  events: Inbox<SecurityEvent>;
  pki: TestPki;
  stop(): Promise<void>;
}

type ListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss';

/** A broker with the named listeners (anonymous; TLS without client certificates) and the given `limits`. */
async function startLimitsBroker(listeners: Array<{ name: string; protocol: ListenerKind } & Record<string, unknown>>, limits: Record<string, unknown>, mqtt: Record<string, unknown> = {}): Promise<LimitsBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-limits-'));
  const pki = await makeTestPki(join(dir, 'pki'), []);
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: listeners.map((l) => ({
        host: '127.0.0.1',
        port: 0,
        allowAnonymous: true,
        ...(l.protocol === 'mqtt' || l.protocol === 'ws' ? { insecure: true } : { tls: { cert: pki.serverCert, key: pki.serverKey, clientCerts: 'none' } }),
        ...l,
      })),
      mqtt,
      persistence: { enabled: false },
      log: { level: 'silent' },
      authz: { policy: 'allow-all-INSECURE' },
      limits,
    },
    dir,
  );
  const server = await startServer({ config, baseDir });
  const events = new Inbox<SecurityEvent>();
  server.broker.events.on((e) => events.push(e));
  return {
    server,
    port: (name) => server.listeners.find((l) => l.config.name === name)!.port,
    events,
    pki,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Attempt =
  | { admitted: true; connack: mqttPacket.IConnackPacket; client: RawConn }
  | { admitted: false; error: string; secureConnected: boolean };

/** A raw MQTT v5 connection over TCP or TLS from a chosen source address. */
class RawConn {
  readonly packets = new Inbox<mqttPacket.Packet>();
  closed = false;
  constructor(readonly socket: net.Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on('packet', (p) => this.packets.push(p));
    socket.on('data', (d: Buffer) => parser.parse(d));
    socket.on('close', () => {
      this.closed = true;
      this.packets.poke();
    });
  }
  send(packet: mqttPacket.Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: 5 }));
  }
  /** Closes and waits for the close (the server gives the slot back when its side closes). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end();
    return withTimeout(closed, 5000, 'client close');
  }
}

/** Opens a connection and sends CONNECT: admitted (CONNACK) or refused (closed or reset first). */
function attempt(port: number, opts: { tls?: TestPki; localAddress?: string } = {}): Promise<Attempt> {
  return withTimeout(
    new Promise<Attempt>((resolve) => {
      let secureConnected = false;
      let error = 'closed';
      const localAddress = opts.localAddress ?? '127.0.0.1';
      const sendConnect = (): void => {
        conn.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: '', clean: true, keepalive: 60 });
      };
      const socket =
        opts.tls !== undefined
          ? tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress }), servername: 'localhost', ca: readFileSync(opts.tls.caCert) }, () => {
              secureConnected = true;
              sendConnect();
            })
          : net.connect({ host: '127.0.0.1', port, localAddress }, sendConnect);
      const conn = new RawConn(socket);
      socket.on('error', (err: NodeJS.ErrnoException) => {
        error = err.code ?? err.message;
      });
      conn.packets.waitFor((ps) => ps.some((p) => p.cmd === 'connack') || conn.closed, 10_000, 'CONNACK or close').then(
        (ps) => {
          const connack = ps.find((p) => p.cmd === 'connack') as mqttPacket.IConnackPacket | undefined;
          if (connack !== undefined) resolve({ admitted: true, connack, client: conn });
          else resolve({ admitted: false, error, secureConnected });
        },
        () => resolve({ admitted: false, error: 'no answer', secureConnected }),
      );
    }),
    15_000,
    `connection attempt to ${port}`,
  );
}

async function admitted(port: number, opts: { tls?: TestPki; localAddress?: string } = {}): Promise<RawConn> {
  const a = await attempt(port, opts);
  assert.ok(a.admitted, a.admitted ? '' : `expected CONNACK, connection ended with ${a.error}`);
  assert.equal(a.connack.reasonCode, ReasonCode.Success);
  return a.client;
}

async function refused(port: number, opts: { tls?: TestPki; localAddress?: string } = {}): Promise<void> {
  const a = await attempt(port, opts);
  if (a.admitted) await a.client.close();
  assert.equal(a.admitted, false, 'expected the connection to be refused at accept');
  if (!a.admitted) assert.equal(a.secureConnected, false, 'a refused client must not complete a TLS handshake');
}

/**
 * Retries until admitted: after a client closes, the server gives the slot back when its
 * own side of the socket closes, a moment later. Each try waits on real I/O, none sleeps.
 */
async function admittedEventually(port: number, opts: { localAddress?: string } = {}): Promise<RawConn> {
  for (let i = 0; i < 200; i++) {
    const a = await attempt(port, opts);
    if (a.admitted) return a.client;
  }
  throw new Error('never admitted again');
}

function limitHits(events: SecurityEvent[], limit: string): Array<Extract<SecurityEvent, { type: 'limit.hit' }>> {
  return events.filter((e): e is Extract<SecurityEvent, { type: 'limit.hit' }> => e.type === 'limit.hit' && e.limit === limit);
}

test('a connection flood from one address is cut at accept, before any TLS handshake, while another address connects', async () => {
  const b = await startLimitsBroker([{ name: 'tls', protocol: 'mqtts' }], { connections: { perIpRate: { perSecond: 0.001, burst: 3 } } });
  const open: RawConn[] = [];
  try {
    const port = b.port('tls');
    for (let i = 0; i < 3; i++) open.push(await admitted(port, { tls: b.pki }));
    for (let i = 0; i < 10; i++) await refused(port, { tls: b.pki });
    // openssl's own account: the server sent nothing at all (no ServerHello).
    const s = await sClient(port, []);
    assert.match(s.stdout, /SSL handshake has read 0 bytes/, s.stdout);
    // Another address is not affected, and a third-party client gets its CONNACK.
    // MQTT.js hands its options to tls.connect, which binds the source address.
    const fromOther: IClientOptions & { localAddress: string } = { protocolVersion: 5, localAddress: '127.0.0.2', ca: readFileSync(b.pki.caCert), servername: 'localhost' };
    const other = await connectMqtt(`mqtts://127.0.0.1:${port}`, fromOther);
    await endQuietly(other);

    const hits = limitHits(b.events.items, 'ip-rate');
    assert.equal(hits.length, 11);
    for (const h of hits) assert.deepEqual({ ...h, detail: undefined }, { type: 'limit.hit', limit: 'ip-rate', listener: 'tls', remoteAddress: '127.0.0.1', action: 'refused', count: 1, detail: undefined });
    // Exactly one handshake per admitted connection: the refused ones never reached TLS.
    const handshakes = await b.events.waitFor((es) => es.filter((e) => e.type === 'tls.handshake').length >= 4, 5000, 'tls.handshake events');
    const hs = handshakes.filter((e): e is Extract<SecurityEvent, { type: 'tls.handshake' }> => e.type === 'tls.handshake');
    assert.equal(hs.length, 4);
    assert.ok(hs.every((e) => e.ok && e.listener === 'tls' && e.resumed === false));
    assert.deepEqual(hs.map((e) => e.remoteAddress).sort(), ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.2']);
  } finally {
    for (const c of open) await c.close();
    await b.stop();
  }
});

test('per-address concurrency: the cap holds per source address, and a closed connection gives its slot back', async () => {
  const b = await startLimitsBroker([{ name: 'plain', protocol: 'mqtt' }], { connections: { perIpMax: 2 } });
  try {
    const port = b.port('plain');
    const first = await admitted(port);
    const second = await admitted(port);
    await refused(port);
    const elsewhere = await admitted(port, { localAddress: '127.0.0.2' });
    assert.equal(limitHits(b.events.items, 'ip-concurrent').length, 1);
    await first.close();
    const third = await admittedEventually(port);
    for (const c of [second, elsewhere, third]) await c.close();
  } finally {
    await b.stop();
  }
});

test("a listener's maxConnections and the broker's maxTotal", async () => {
  const b = await startLimitsBroker(
    [
      { name: 'capped', protocol: 'mqtt', maxConnections: 1 },
      { name: 'open', protocol: 'mqtt' },
    ],
    { connections: { maxTotal: 3 } },
  );
  try {
    const a = await admitted(b.port('capped'));
    await refused(b.port('capped'), { localAddress: '127.0.0.3' });
    assert.equal(limitHits(b.events.items, 'connections-listener')[0]?.listener, 'capped');
    // The other listener still has room until the broker total (3) is reached.
    const o1 = await admitted(b.port('open'));
    const o2 = await admitted(b.port('open'), { localAddress: '127.0.0.4' });
    await refused(b.port('open'), { localAddress: '127.0.0.5' });
    const totals = limitHits(b.events.items, 'connections-total');
    assert.deepEqual(totals.map((h) => [h.listener, h.remoteAddress]), [['open', '127.0.0.5']]);
    await a.close();
    // The capped listener's slot (and one of the total) is back.
    const again = await admittedEventually(b.port('capped'));
    for (const c of [o1, o2, again]) await c.close();
  } finally {
    await b.stop();
  }
});

test('ipDeny refuses a range before TLS (connection.refused at accept); ipAllow admits only its ranges', async () => {
  const b = await startLimitsBroker(
    [
      { name: 'tls', protocol: 'mqtts' },
      { name: 'plain', protocol: 'mqtt' },
    ],
    { ipDeny: ['127.0.0.2/32'], ipAllow: ['127.0.0.0/30'] },
  );
  try {
    await refused(b.port('tls'), { tls: b.pki, localAddress: '127.0.0.2' });
    await refused(b.port('plain'), { localAddress: '127.0.0.2' });
    // 127.0.0.5 is outside the allow list.
    await refused(b.port('plain'), { localAddress: '127.0.0.5' });
    const ok = await admitted(b.port('tls'), { tls: b.pki });
    const ok3 = await admitted(b.port('plain'), { localAddress: '127.0.0.3' });
    const refusals = b.events.items.filter((e): e is Extract<SecurityEvent, { type: 'connection.refused' }> => e.type === 'connection.refused');
    assert.deepEqual(
      refusals.map((e) => [e.stage, e.listener, e.remoteAddress]),
      [
        ['accept', 'tls', '127.0.0.2'],
        ['accept', 'plain', '127.0.0.2'],
        ['accept', 'plain', '127.0.0.5'],
      ],
    );
    assert.match(refusals[0]!.reason, /ipDeny 127\.0\.0\.2\/32/);
    assert.match(refusals[2]!.reason, /ipAllow/);
    // The denied TLS client never got a handshake event: only the admitted one did.
    const hs = await b.events.waitFor((es) => es.some((e) => e.type === 'tls.handshake'), 5000, 'tls.handshake');
    assert.deepEqual(
      hs.filter((e) => e.type === 'tls.handshake').map((e) => (e as { remoteAddress: string }).remoteAddress),
      ['127.0.0.1'],
    );
    await ok.close();
    await ok3.close();
  } finally {
    await b.stop();
  }
});

test('a WebSocket listener is guarded on its raw socket, before HTTP', async () => {
  const b = await startLimitsBroker(
    [
      { name: 'ws', protocol: 'ws' },
      { name: 'wss', protocol: 'wss' },
    ],
    { connections: { perIpMax: 1 } },
  );
  const open = (url: string, localAddress: string, ca?: Buffer): Promise<WebSocket | string> =>
    withTimeout(
      new Promise((resolve) => {
        const ws = new WebSocket(url, 'mqtt', { localAddress, ...(ca !== undefined ? { ca, servername: 'localhost' } : {}) });
        ws.once('open', () => resolve(ws));
        ws.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      }),
      5000,
      'WebSocket open or error',
    );
  try {
    const first = await open(`ws://127.0.0.1:${b.port('ws')}/mqtt`, '127.0.0.1');
    assert.ok(first instanceof WebSocket);
    const second = await open(`ws://127.0.0.1:${b.port('ws')}/mqtt`, '127.0.0.1');
    assert.equal(typeof second, 'string', 'the second WebSocket from the same address must fail');
    const hit = limitHits(b.events.items, 'ip-concurrent');
    assert.deepEqual(hit.map((h) => [h.listener, h.remoteAddress]), [['ws', '127.0.0.1']]);
    // Counts span listeners: the same address is at its cap on wss too; another is not.
    assert.equal(typeof (await open(`wss://127.0.0.1:${b.port('wss')}/mqtt`, '127.0.0.1', readFileSync(b.pki.caCert))), 'string');
    const tlsWs = await open(`wss://127.0.0.1:${b.port('wss')}/mqtt`, '127.0.0.2', readFileSync(b.pki.caCert));
    assert.ok(tlsWs instanceof WebSocket);
    const hs = await b.events.waitFor((es) => es.some((e) => e.type === 'tls.handshake'), 5000, 'wss tls.handshake');
    assert.deepEqual(
      hs.filter((e) => e.type === 'tls.handshake').map((e) => [(e as { listener: string }).listener, (e as { remoteAddress: string }).remoteAddress, (e as { ok: boolean }).ok]),
      [['wss', '127.0.0.2', true]],
    );
    // Closing the first gives its slot back.
    const closed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    first.close();
    await withTimeout(closed, 5000, 'WebSocket close');
    let again: WebSocket | string = 'not tried';
    for (let i = 0; i < 200 && !(again instanceof WebSocket); i++) again = await open(`ws://127.0.0.1:${b.port('ws')}/mqtt`, '127.0.0.1');
    assert.ok(again instanceof WebSocket);
    again.terminate();
    tlsWs.terminate();
  } finally {
    await b.stop();
  }
});

test('TLS handshakes become tls.handshake events: full, resumed (ticket), and failed with the reason', async () => {
  const b = await startLimitsBroker([{ name: 'tls', protocol: 'mqtts' }], {});
  try {
    const ca = readFileSync(b.pki.caCert);
    const handshake = (session?: Buffer): Promise<tls.TLSSocket> =>
      withTimeout(
        new Promise((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: b.port('tls'), servername: 'localhost', ca, ...(session !== undefined ? { session } : {}) }, () => resolve(s));
          s.once('error', reject);
        }),
        5000,
        'TLS handshake',
      );
    const first = await handshake();
    const ticket = await withTimeout(new Promise<Buffer>((resolve) => first.once('session', resolve)), 5000, 'session ticket');
    first.destroy();
    const second = await handshake(ticket);
    assert.equal(second.isSessionReused(), true);
    // The server finishes after the client (TLS 1.3): close only once it has, or the close
    // would be its handshake failure.
    const oks = await b.events.waitFor((es) => es.filter((e) => e.type === 'tls.handshake').length >= 2, 5000, 'two handshake events');
    second.destroy();
    assert.deepEqual(
      oks.filter((e) => e.type === 'tls.handshake').map((e) => [(e as { ok: boolean }).ok, (e as { resumed: boolean }).resumed]),
      [
        [true, false],
        [true, true],
      ],
    );
    b.events.items.length = 0;

    // Plain HTTP bytes at a TLS port.
    const raw = net.connect({ host: '127.0.0.1', port: b.port('tls') }, () => raw.write('GET / HTTP/1.1\r\n\r\n'));
    raw.on('error', () => {});
    const events = await b.events.waitFor((es) => es.some((e) => e.type === 'tls.handshake'), 5000, 'failed handshake event');
    const e = events.find((x) => x.type === 'tls.handshake') as Extract<SecurityEvent, { type: 'tls.handshake' }>;
    assert.equal(e.ok, false);
    assert.equal(e.listener, 'tls');
    assert.equal(e.remoteAddress, '127.0.0.1');
    assert.match(e.reason ?? '', /ERR_SSL_HTTP_REQUEST|http request/i);
    raw.destroy();
  } finally {
    await b.stop();
  }
});

test("per-listener maxPacketSize: CONNACK announces the listener's value and a larger packet is refused with 0x95", async () => {
  const b = await startLimitsBroker(
    [
      { name: 'small', protocol: 'mqtt', maxPacketSize: 512 },
      { name: 'default', protocol: 'mqtt' },
    ],
    {},
    { maxPacketSize: 4096 },
  );
  try {
    // MQTT.js reads the announced maximum from CONNACK.
    let announced: number | undefined;
    const js = await connectMqtt(`mqtt://127.0.0.1:${b.port('small')}`, { protocolVersion: 5 }, 5000, (c) => c.once('connect', (p) => (announced = p.properties?.maximumPacketSize)));
    assert.equal(announced, 512);
    await endQuietly(js);

    const small = await admitted(b.port('small'));
    const def = await admitted(b.port('default'));
    const big = { cmd: 'publish', topic: 't/big', payload: Buffer.alloc(1000, 1), qos: 1, messageId: 1, retain: false, dup: false } as const;
    def.send(big);
    const ack = await def.packets.waitFor((ps) => ps.some((p) => p.cmd === 'puback'), 5000, 'PUBACK on the default listener');
    assert.ok(ack.some((p) => p.cmd === 'puback'));
    small.send(big);
    const got = await small.packets.waitFor((ps) => ps.some((p) => p.cmd === 'disconnect') || small.closed, 5000, 'DISCONNECT');
    const disconnect = got.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined;
    assert.equal(disconnect?.reasonCode, ReasonCode.PacketTooLarge);
    const connacks = [small, def].map((c) => (c.packets.items.find((p) => p.cmd === 'connack') as mqttPacket.IConnackPacket).properties?.maximumPacketSize);
    assert.deepEqual(connacks, [512, 4096]);
    await def.close();
    await small.close();
  } finally {
    await b.stop();
  }
});

test('a bad CIDR range in limits fails the start with one line naming the entry', async () => {
  assert.throws(
    () => parseConfig({ listeners: [{ name: 'p', protocol: 'mqtt', port: 0, insecure: true }], limits: { ipDeny: ['10.0.0.0/8', '300.1.1.1'] } }, tmpdir()),
    (err: Error & { code?: string }) => err.code === 'ERR_CONFIG' && /^config error at limits\.ipDeny\[1\]: "300\.1\.1\.1" is not/.test(err.message),
  );
  const dir = mkdtempSync(join(tmpdir(), 'bastion-limits-cli-'));
  try {
    const file = join(dir, 'bastion.yaml');
    writeFileSync(file, ['dataDir: ./data', 'listeners:', '  - { name: p, protocol: mqtt, port: 0, insecure: true }', 'limits:', '  ipAllow: ["fe80::/200"]', ''].join('\n'));
    const r = await run('node', [BASTION_MAIN, 'serve', '--config', file], { timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim(), 'bastion: config error at limits.ipAllow[0]: "fe80::/200" is not an IPv4 or IPv6 address or CIDR range');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
