/**
 * The connection-rate role of a load-generating worker. Owns: opening connections one
 * after another on a few lanes, counting successes and failures, and disconnecting each.
 * Must not: retry without a pause.
 */
import { Counter, type ConnectorRole } from './worker-api.js';
import { TLSSocket } from 'node:tls';
import { Client, withClientId, type TlsResume } from './worker-client.js';
import { C, init, note, stopped, tallyTlsGroup } from './worker-context.js';

const DISCONNECT = Buffer.from([0xe0, 0x00]);
/** What TLS 1.3 adds to an application-data record: 5-byte header, content-type byte, 16-byte AEAD tag. */
const TLS13_RECORD_OVERHEAD = 22;

/** The client's first group, the only one OpenSSL sends a key share for when the list is explicit. */
function firstGroup(groups: string | undefined): string | null {
  return groups === undefined ? null : (groups.split(':')[0]?.trim() ?? null);
}

/**
 * Tallies the negotiated group and, with byte counting, adds the connection's handshake
 * bytes: everything on the TCP socket up to CONNACK less the CONNECT and CONNACK records
 * (one TLS 1.3 record each, as both brokers write CONNACK in one write).
 */
function countTls(socket: TLSSocket, client: Client, connectBytes: number, keyShare: string | null): void {
  // Node reports hybrid groups as { type: 'TLSGroup', name: 'X25519MLKEM768' }.
  const group = (socket.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? 'unknown';
  tallyTlsGroup(`${socket.getProtocol() ?? '?'} ${group}`);
  if (keyShare !== null && group !== keyShare) Atomics.add(C, Counter.GroupFallbacks, 1);
  const w = client.wire;
  if (w === null) return;
  Atomics.add(C, Counter.HandshakeBytesOut, w.raw.bytesWritten - (connectBytes + TLS13_RECORD_OVERHEAD));
  Atomics.add(C, Counter.HandshakeBytesIn, w.raw.bytesRead - (client.connackBytes + TLS13_RECORD_OVERHEAD));
  Atomics.add(C, Counter.HelloBytesOut, w.helloOut);
  Atomics.add(C, Counter.ServerFlightBytesIn, w.flightIn);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function runConnector(role: ConnectorRole): Promise<void> {
  let nextId = 0;
  let made = 0;
  const keyShare = firstGroup(role.target.tls?.groups);
  const lane = async (): Promise<void> => {
    // Each lane offers the newest ticket it was given, as a reconnecting device would.
    const resume: TlsResume | null = role.resume ? { session: undefined, onSession: (s) => (resume!.session = s) } : null;
    while (!stopped() && made < role.maxConnects) {
      made++;
      const id = init.index * 100_000_000 + nextId++;
      let client: Client | null = null;
      try {
        const connect = withClientId(role.connectTemplate, role.clientIdOffset, id);
        client = await Client.open(role.target, connect, null, false, resume, role.countBytes);
        if (stopped()) {
          client.socket.destroy();
          return;
        }
        Atomics.add(C, Counter.Connects, 1);
        if (client.socket instanceof TLSSocket) {
          if (client.socket.isSessionReused()) Atomics.add(C, Counter.Resumed, 1);
          countTls(client.socket, client, connect.length, keyShare);
        }
        // DISCONNECT and let the broker close first, so TIME_WAIT lands on the listening side.
        const socket = client.socket;
        socket.write(DISCONNECT);
        setTimeout(() => socket.destroy(), 1000).unref();
      } catch (e) {
        client?.socket.destroy();
        if (stopped()) return;
        Atomics.add(C, Counter.ConnectFails, 1);
        note(`connect: ${(e as Error).message}`);
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: role.concurrency }, lane));
}
