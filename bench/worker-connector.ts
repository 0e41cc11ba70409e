/**
 * The connection-rate role of a load-generating worker. Owns: opening connections one
 * after another on a few lanes, counting successes and failures, and disconnecting each.
 * Must not: retry without a pause.
 */
import { Counter, type ConnectorRole } from './worker-api.js';
import { TLSSocket } from 'node:tls';
import { Client, withClientId, type TlsResume } from './worker-client.js';
import { C, init, note, stopped } from './worker-context.js';

const DISCONNECT = Buffer.from([0xe0, 0x00]);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function runConnector(role: ConnectorRole): Promise<void> {
  let nextId = 0;
  let made = 0;
  const lane = async (): Promise<void> => {
    // Each lane offers the newest ticket it was given, as a reconnecting device would.
    const resume: TlsResume | null = role.resume ? { session: undefined, onSession: (s) => (resume!.session = s) } : null;
    while (!stopped() && made < role.maxConnects) {
      made++;
      const id = init.index * 100_000_000 + nextId++;
      let client: Client | null = null;
      try {
        client = await Client.open(role.target, withClientId(role.connectTemplate, role.clientIdOffset, id), null, false, resume);
        if (stopped()) {
          client.socket.destroy();
          return;
        }
        Atomics.add(C, Counter.Connects, 1);
        if (client.socket instanceof TLSSocket && client.socket.isSessionReused()) Atomics.add(C, Counter.Resumed, 1);
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
