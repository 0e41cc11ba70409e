/**
 * Scenario A's probe: the publish→deliver time to ONE device while the rest of the fleet is
 * held. A probe subscriber and a probe publisher, both mTLS devices of the bench CA, in the
 * coordinator (which is otherwise idle then); QoS 0 messages at a fixed rate, each carrying
 * its sequence number, timed from the write to its arrival with the monotonic clock.
 * Owns: those two connections, opened and closed here. Must not: wait without a bound.
 */
import net from 'node:net';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import { quantile } from './fleet-scale-options.js';
import { encodeConnect, encodeSubscribe } from './packets.js';

const SETUP_TIMEOUT_MS = 10_000;
/** After the last message: how long a late delivery is still waited for. */
const DRAIN_MS = 2_000;

export interface ProbeResult {
  sent: number;
  delivered: number;
  p50Us: number | null;
  p99Us: number | null;
  maxUs: number | null;
}

interface ProbeClient {
  socket: tls.TLSSocket;
  parser: mqttPacket.Parser;
}

function open(port: number, ca: string, cert: { cert: string; key: string }, clientId: string, localAddress: string): Promise<ProbeClient> {
  return new Promise((resolve, reject) => {
    // localAddress is a socket.connect() option, which tls.connect() passes on (its type omits it).
    const options: tls.ConnectionOptions & { localAddress: string } = {
      host: '127.0.0.1',
      port,
      localAddress,
      ca,
      cert: cert.cert,
      key: cert.key,
      // SECURITY: verified as any device verifies its broker (chain against the CA, IP SAN).
      rejectUnauthorized: true,
      checkServerIdentity: (host: string): Error | undefined => {
        const c = socket.getPeerX509Certificate();
        return c !== undefined && net.isIP(host) !== 0 && c.checkIP(host) !== undefined ? undefined : new Error(`server certificate does not name ${host}`);
      },
    };
    const socket: tls.TLSSocket = tls.connect(options);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const timer = setTimeout(() => fail(new Error(`probe ${clientId}: no CONNACK within ${SETUP_TIMEOUT_MS} ms`)), SETUP_TIMEOUT_MS);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    socket.once('error', fail);
    socket.on('data', (b: Buffer) => parser.parse(b));
    parser.once('packet', (p) => {
      clearTimeout(timer);
      if (p.cmd !== 'connack' || (p.returnCode ?? 0) !== 0) return fail(new Error(`probe ${clientId}: CONNACK refused`));
      socket.off('error', fail);
      socket.on('error', () => undefined);
      resolve({ socket, parser });
    });
    socket.once('secureConnect', () => {
      socket.setNoDelay(true);
      socket.write(encodeConnect({ clientId, version: 4, clean: true, keepalive: 600 }));
    });
  });
}

/** `count` messages at `rate`/s from one probe device to another; times in µs. */
export async function runProbe(port: number, ca: string, cert: { cert: string; key: string }, count: number, rate: number): Promise<ProbeResult> {
  const topic = 'fleet/probe/rtt';
  const sub = await open(port, ca, cert, 'fleet-probe-sub', '127.9.0.1');
  let pub: ProbeClient | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('probe: no SUBACK')), SETUP_TIMEOUT_MS);
      sub.parser.once('packet', (p) => {
        clearTimeout(timer);
        if (p.cmd === 'suback') resolve();
        else reject(new Error(`probe: ${p.cmd} instead of SUBACK`));
      });
      sub.socket.write(encodeSubscribe(topic, 0, 4));
    });
    pub = await open(port, ca, cert, 'fleet-probe-pub', '127.9.0.2');
    const sentAt = new Array<bigint>(count);
    const samples: number[] = [];
    sub.parser.on('packet', (p) => {
      if (p.cmd !== 'publish') return;
      const now = process.hrtime.bigint();
      const seq = Buffer.from(p.payload as Buffer).readUInt32BE(0);
      const t = sentAt[seq];
      if (t !== undefined) samples.push(Number(now - t) / 1000);
    });
    const intervalMs = 1000 / rate;
    const start = performance.now();
    for (let seq = 0; seq < count; seq++) {
      // On a fixed schedule (not after each delivery): a slow delivery does not slow the probe.
      const due = start + seq * intervalMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const payload = Buffer.alloc(16);
      payload.writeUInt32BE(seq, 0);
      const packet = mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false });
      sentAt[seq] = process.hrtime.bigint();
      pub.socket.write(packet);
    }
    const drainUntil = performance.now() + DRAIN_MS;
    while (samples.length < count && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
    const sorted = [...samples].sort((a, b) => a - b);
    const r = (v: number | null): number | null => (v === null ? null : Math.round(v));
    return { sent: count, delivered: samples.length, p50Us: r(quantile(sorted, 0.5)), p99Us: r(quantile(sorted, 0.99)), maxUs: r(sorted.at(-1) ?? null) };
  } finally {
    sub.socket.destroy();
    pub?.socket.destroy();
  }
}
