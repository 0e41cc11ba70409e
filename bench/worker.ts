/**
 * A load-generating worker thread. Owns: sockets to the broker under test, speaking MQTT
 * with pre-encoded packets, and adding what it observes to the shared counters. Must not:
 * decode packets fully, write one syscall per message, or run without a bound (every
 * wait has a timeout and every loop checks Counter.Stop).
 * This module is the thread's entry: it sets up the role given in workerData (the roles
 * live in the worker-*.ts modules) and answers the coordinator's messages.
 */
import type { FrameVisitor } from './frames.js';
import {
  Counter,
  type ConnectorRole,
  type CoordinatorMessage,
  type IdleRole,
  type LatencyPublisherRole,
  type LatencySubscriberRole,
  type LatencySummary,
  type SubscriberRole,
} from './worker-api.js';
import { Client, openMany, withClientId } from './worker-client.js';
import { runConnector } from './worker-connector.js';
import { C, errors, init, port, send, tlsGroups } from './worker-context.js';
import { EndToEndWindow } from './worker-e2e-window.js';
import { LatencyPublisher, LatencySubscriber } from './worker-latency.js';
import { Publisher } from './worker-publisher.js';
import { Subscriber } from './worker-subscriber.js';

const idleVisitor: FrameVisitor = { onFrame: () => undefined, onChunkEnd: () => undefined };

// ---------------------------------------------------------------- dispatch

interface Running {
  start(): void;
  finish(): LatencySummary | null;
  behind(): number;
  close(): void;
}

async function setup(): Promise<Running> {
  const role = init.role;
  switch (role.kind) {
    case 'publisher': {
      const gate = new EndToEndWindow(role.fanout, role.e2eWindow);
      const clients: Client[] = [];
      // QoS 1: PUBACKs are read in batches (the 64-message window per connection keeps the pipe full).
      for (const connect of role.connects) clients.push(await Client.open(role.target, connect, null, role.qos === 1));
      const pubs = clients.map((c, i) => new Publisher(c, role.publishes[i % role.publishes.length]!, role, gate));
      send({ type: 'ready', opened: clients.length, failed: 0 });
      return { start: () => pubs.forEach((p) => p.start()), finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    case 'subscriber': {
      const r: SubscriberRole = role;
      const clients: Client[] = [];
      const { clients: opened, failed } = await openMany(r.connects.length, 8, (i) => Client.open(r.target, r.connects[i]!, r.subscribe, r.coalesceReads));
      if (failed > 0) throw new Error(`${failed} of ${r.connects.length} subscribers failed to connect: ${errors.join('; ')}`);
      for (const c of opened) {
        new Subscriber(c);
        clients.push(c);
      }
      send({ type: 'ready', opened: clients.length, failed });
      return { start: () => undefined, finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    case 'latency-publisher': {
      const r: LatencyPublisherRole = role;
      const client = await Client.open(r.target, r.connect, null);
      const pub = new LatencyPublisher(client, r);
      send({ type: 'ready', opened: 1, failed: 0 });
      return { start: () => pub.start(), finish: () => null, behind: () => pub.behind, close: () => client.socket.destroy() };
    }
    case 'latency-subscriber': {
      const r: LatencySubscriberRole = role;
      const client = await Client.open(r.target, r.connect, r.subscribe);
      const sub = new LatencySubscriber(client, r.capacity, r.version === 5);
      send({ type: 'ready', opened: 1, failed: 0 });
      return { start: () => undefined, finish: () => sub.summary(), behind: () => 0, close: () => client.socket.destroy() };
    }
    case 'connector': {
      const r: ConnectorRole = role;
      let done: Promise<void> = Promise.resolve();
      send({ type: 'ready', opened: 0, failed: 0 });
      return {
        start: () => {
          done = runConnector(r);
        },
        finish: () => null,
        behind: () => 0,
        close: () => void done,
      };
    }
    case 'idle': {
      const r: IdleRole = role;
      const { clients, failed } = await openMany(r.count, r.concurrency, (i) =>
        Client.open(r.target, withClientId(r.connectTemplate, r.clientIdOffset, init.index * 100_000_000 + i), null).then((c) => {
          Atomics.add(C, Counter.Connects, 1);
          return c;
        }),
      );
      Atomics.add(C, Counter.ConnectFails, failed);
      // Attached so that a connection the broker drops while idle is counted.
      for (const c of clients) c.attach(idleVisitor);
      send({ type: 'ready', opened: clients.length, failed });
      return { start: () => undefined, finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    default: {
      const unknown: never = role;
      throw new Error(`unknown role ${JSON.stringify(unknown)}`);
    }
  }
}

const running = setup().catch((e: unknown) => {
  send({ type: 'fatal', message: `${init.role.kind}: ${(e as Error).message}${errors.length > 0 ? ` (${errors.join('; ')})` : ''}` });
  return null;
});

port.on('message', (msg: CoordinatorMessage) => {
  void running.then((r) => {
    if (r === null) return;
    if (msg.type === 'start') r.start();
    else {
      const latency = r.finish();
      send({ type: 'done', latency, behind: r.behind(), errors, tlsGroups: Object.fromEntries(tlsGroups) });
      r.close();
    }
  });
});
