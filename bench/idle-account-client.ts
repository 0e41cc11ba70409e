/**
 * The client side of the idle-footprint account: a process forked by bench/idle-account.ts
 * that opens batches of raw MQTT 3.1.1 connections (TCP or mTLS), each sending CONNECT
 * (keepalive 600 s) and waiting for CONNACK, then holding them idle. Owns: those sockets,
 * and reporting how many opened. Must not: measure anything (the server process does), or
 * send anything after CONNACK except the optional 16 KB exchange.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

export interface ClientSpec {
  port: number;
  tls: boolean;
  caCert: string;
  clientCert: string;
  clientKey: string;
  /** JSON [{ cert, key }] (bench/idle-account-pki.ts): connection i presents certificate i; null: all use clientCert. */
  devicesFile: string | null;
  /** Handshakes in flight at once. */
  concurrency: number;
  /** After CONNACK, send 16 KB and wait for 16 KB back (bare servers only). */
  exchange: boolean;
  /** Spread sources over 127.x.y.z (needed above ~5,000 held connections per address pair limits). */
  spreadSources: boolean;
  /** The client's key-exchange groups (ecdhCurve); absent: Node's default (hybrid ML-KEM share and X25519). */
  groups?: string;
}

export type ToClient = { cmd: 'open'; count: number } | { cmd: 'stop' };
export type FromClient = { type: 'opened'; ok: number; failed: number; held: number; firstError: string | null } | { type: 'error'; message: string };

const EXCHANGE_BYTES = 16 * 1024;
const CONNECT_TIMEOUT_MS = 20_000;

/** An MQTT 3.1.1 CONNECT: clean session, keepalive 600 s, no credentials. */
export function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x02, 0x58]);
  const remaining = variable.length + 2 + id.length;
  if (remaining > 127) throw new Error('client id too long for a one-byte remaining length');
  return Buffer.concat([Buffer.from([0x10, remaining]), variable, Buffer.from([id.length >> 8, id.length & 0xff]), id]);
}

const held: net.Socket[] = [];
let devices: { cert: string; key: string }[] | null = null;
let nextIndex = 0;

function sourceFor(i: number): string {
  // 127.1.0.0/16 onwards: never 127.0.0.1 itself, 250 addresses per /24.
  return `127.${1 + Math.floor(i / 62_500)}.${Math.floor(i / 250) % 250}.${1 + (i % 250)}`;
}

function openOne(spec: ClientSpec, tlsOpts: tls.ConnectionOptions | null): Promise<void> {
  const index = nextIndex++;
  return new Promise((resolve, reject) => {
    const base = { host: '127.0.0.1', port: spec.port, ...(spec.spreadSources ? { localAddress: sourceFor(index) } : {}) };
    const device = devices !== null && devices.length > 0 ? devices[index % devices.length]! : null;
    const socket: net.Socket = tlsOpts !== null ? tls.connect({ ...base, ...tlsOpts, ...(device !== null ? { cert: device.cert, key: device.key } : {}) }) : net.connect(base);
    let got = 0;
    let connacked = false;
    const timer = setTimeout(() => fail(new Error('no CONNACK in time')), CONNECT_TIMEOUT_MS);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const done = (): void => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      // Idle from here: keep the socket and its data flowing nowhere.
      socket.on('data', () => undefined);
      held.push(socket);
      resolve();
    };
    socket.once(tlsOpts !== null ? 'secureConnect' : 'connect', () => socket.write(connectPacket(`idle-${process.pid}-${index}`)));
    socket.on('data', (chunk: Buffer) => {
      got += chunk.length;
      if (!connacked) {
        if (got < 4) return;
        if (chunk[0] !== 0x20 || chunk[3] !== 0x00) return fail(new Error(`not a successful CONNACK: ${chunk.subarray(0, 4).toString('hex')}`));
        connacked = true;
        got -= 4;
        if (!spec.exchange) return done();
        socket.write(Buffer.alloc(EXCHANGE_BYTES, 0x62));
      }
      if (got >= EXCHANGE_BYTES) done();
    });
    socket.on('error', (e) => fail(e));
  });
}

async function open(spec: ClientSpec, tlsOpts: tls.ConnectionOptions | null, count: number): Promise<FromClient> {
  let ok = 0;
  let failed = 0;
  let firstError: string | null = null;
  let left = count;
  const lane = async (): Promise<void> => {
    while (left > 0) {
      left -= 1;
      try {
        await openOne(spec, tlsOpts);
        ok += 1;
      } catch (e) {
        failed += 1;
        firstError ??= e instanceof Error ? e.message : String(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, spec.concurrency) }, lane));
  return { type: 'opened', ok, failed, held: held.length, firstError };
}

function main(): void {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ClientSpec;
  if (spec.devicesFile !== null) devices = JSON.parse(readFileSync(spec.devicesFile, 'utf8')) as { cert: string; key: string }[];
  // SECURITY: the client verifies the server against the bench CA (127.0.0.1 is in its SANs).
  const tlsOpts: tls.ConnectionOptions | null = spec.tls
    ? { ca: readFileSync(spec.caCert), cert: readFileSync(spec.clientCert), key: readFileSync(spec.clientKey), minVersion: 'TLSv1.3', ...(spec.groups !== undefined ? { ecdhCurve: spec.groups } : {}) }
    : null;
  process.on('message', (raw: unknown) => {
    const msg = raw as ToClient;
    if (msg.cmd === 'stop') process.exit(0);
    open(spec, tlsOpts, msg.count).then(
      (r) => process.send?.(r),
      (e: unknown) => process.send?.({ type: 'error', message: e instanceof Error ? e.message : String(e) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}

main();
