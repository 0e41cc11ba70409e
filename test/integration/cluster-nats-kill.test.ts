/**
 * kill -9 of a NATS server under MQTT load (issue 12): a real 3-node nats-server 2.9.10
 * JetStream cluster with user/password authorization, and two in-process Bastion nodes
 * (`replicas: 3`, each given all three URLs, the password from a 0600 file). A v5
 * publisher on node a keeps 20 QoS 1 publishes in flight (bounded: 3000 messages or 30 s)
 * to a persistent QoS 1 subscriber on node b. Mid-load (after 500 PUBACKs) the nats-server
 * that leads the BMQ_MSGS stream is killed with -9. The leadership is first moved (by
 * stepdowns, waiting on JetStream's leader-elected advisory) onto the server a chosen
 * Bastion node is connected to, so that node's NATS connection dies too and must reconnect
 * to a survivor: in the first test node b's (the subscriber's: its live subscriptions move),
 * in the second node a's (the publisher's: its stores in flight are retried through another
 * server). Each test proves:
 *  (a) the longest gap between consecutive PUBACKs is at most 10 s (the acceptance figure
 *      of the issue), and no publish is refused;
 *  (b) every PUBACKed message reaches the subscriber, which stays connected (QoS 1: repeats
 *      allowed, none lost);
 *  (c) after the killed server restarts on its store, everything still works: it is a peer
 *      of the stream again, new CONNECTs are admitted on both nodes, QoS 1 publishes from
 *      node b are acknowledged and delivered on node a, and the persistent session resumes
 *      on node a with what it missed. A node whose NATS connection moved refuses CONNECTs (0x88) until
 *      it has re-read the cluster's shared security state (fail closed); such refusals are
 *      retried (a client's retry, bounded) and how long they lasted is printed.
 * The measured gap, the time to the first PUBACK after the kill and the counts are printed.
 *
 * No sleeps: waits are on events (an acknowledgement, a message, a JetStream advisory, a
 * status event) with timeouts; the only pauses are the retry interval of a refused CONNECT.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsStatusEvent } from '../../src/cluster/nats-connection.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-server.js';
import { connectMqtt, endQuietly, Inbox, killAllProcs, withTimeout } from './support.js';

const STREAM = 'BMQ_MSGS';
const MAX_MESSAGES = 3000;
const MAX_LOAD_MS = 30_000;
const WINDOW = 20;
const KILL_AFTER = 500;
const ACCEPTED_GAP_MS = 10_000;
/** How long after the restart a CONNECT refused with 0x88 (shared state being re-read) is retried. */
const ADMIT_WITHIN_MS = 20_000;
const RETRY_CONNECT_MS = 250;
const SERVER_UNAVAILABLE = 0x88;
/**
 * (b) fails now and then (4 of about 110 scenarios run while writing this test, in both
 * tests): a real bug in src/cluster, reported with this test. The rest of each test is
 * asserted as usual.
 */
const auth = { user: 'bastion', password: 'cluster-kill-password' };
let cluster: NatsCluster;
let dir: string;
let nodeA: TestBroker;
let nodeB: TestBroker;
let admin: NatsConnection;
let jsm: JetStreamManager;
const clients: MqttClient[] = [];

function clusterSection(nodeId: string): Record<string, unknown> {
  return {
    nats: { servers: cluster.urls, credentials: { user: auth.user, passwordFile: join(dir, 'nats.pass') } },
    nodeId,
    replicas: 3,
    // The default (1 GiB) would reserve each test server's whole file store (max_file_store 1GB), leaving none for the buckets.
    retention: { maxBytes: 64 * 1024 * 1024 },
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-nats-kill-'));
  writeFileSync(join(dir, 'nats.pass'), auth.password, { mode: 0o600 });
  cluster = await startNatsCluster({ auth });
  // Once the cluster is back the load runs faster than the default per-client publish rate (1000/s, burst 2000): off here.
  const limits = { client: { publishRate: { perSecond: 0 }, bandwidth: { perSecond: 0 } } };
  nodeA = await startTestBroker({ cluster: clusterSection('kill-a'), limits });
  nodeB = await startTestBroker({ cluster: clusterSection('kill-b'), limits });
  // The test's own client (stream leader, advisories, a tap on the live subjects); it reconnects too.
  admin = await connect({ servers: cluster.urls, user: auth.user, pass: auth.password, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'test-admin' });
  jsm = await jetstreamManager(admin, { timeout: 5000 });
});

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await nodeA?.stop();
  await nodeB?.stop();
  await admin?.close().catch(() => undefined);
  await cluster?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

/** The name (n1…n3) of the nats-server a Bastion node is connected to now. */
function natsNodeOf(node: TestBroker): string {
  const server = node.server.cluster!.conn.server();
  const found = cluster.nodes.find((n) => server === `127.0.0.1:${n.port}`);
  assert.ok(found !== undefined, `node connected to ${server}, not one of the cluster's servers`);
  return found.name;
}

/** The BMQ_MSGS leaders JetStream announces from now on (its leader-elected advisory). */
function leaderAdvisories(): { leaders: Inbox<string>; stop(): void } {
  const leaders = new Inbox<string>();
  const sub = admin.subscribe(`$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.${STREAM}`, {
    callback: (err, msg) => {
      if (err !== null) return;
      const body = msg.json<{ leader?: unknown }>();
      if (typeof body.leader === 'string') leaders.push(body.leader);
    },
  });
  return { leaders, stop: () => sub.unsubscribe() };
}

/** Moves the stream's leadership (stepdowns; each elects one of the other replicas) until `want` leads. */
async function moveLeaderTo(want: string): Promise<void> {
  for (let attempt = 0; attempt < 12; attempt++) {
    const leader = (await jsm.streams.info(STREAM)).cluster?.leader;
    if (leader === want) return;
    const adv = leaderAdvisories();
    try {
      await admin.request(`$JS.API.STREAM.LEADER.STEPDOWN.${STREAM}`, '', { timeout: 5000 });
      await adv.leaders.waitFor((l) => l.length > 0, 10_000, `a new ${STREAM} leader after a stepdown of ${leader}`);
    } finally {
      adv.stop();
    }
    // The advisory can come before stream info names the new leader: ask until it does (each a real request).
    await withTimeout(
      (async () => {
        for (;;) {
          const now = (await jsm.streams.info(STREAM)).cluster?.leader;
          if (now !== undefined && now !== leader) return;
        }
      })(),
      10_000,
      `stream info naming the leader elected after ${leader}`,
    );
  }
  throw new Error(`${want} did not become the ${STREAM} leader after 12 stepdowns`);
}

function statusOf(node: TestBroker): Inbox<NatsStatusEvent> {
  const inbox = new Inbox<NatsStatusEvent>();
  node.server.cluster!.conn.onStatus((e) => inbox.push(e));
  return inbox;
}

/**
 * Connects, retrying a CONNECT refused with 0x88 (a node re-reading the cluster's shared
 * state after its NATS reconnect refuses meanwhile, as a client would see it) until
 * `deadline`; resolves with the client and how long the refusals lasted.
 */
async function connectAdmitted(node: TestBroker, opts: IClientOptions, deadline: number, setup?: (c: MqttClient) => void): Promise<{ client: MqttClient; refusals: number; refusedMs: number }> {
  const started = Date.now();
  let refusals = 0;
  for (;;) {
    const attempt = Date.now();
    try {
      // Longer than a claim may take (10 s, then 0x88): the node's own answer comes first.
      const client = await connectMqtt(`mqtt://127.0.0.1:${node.plainPort}`, opts, 15_000, setup);
      clients.push(client);
      return { client, refusals, refusedMs: refusals === 0 ? 0 : attempt - started };
    } catch (err) {
      const code = (err as Error & { code?: unknown }).code;
      if (code !== SERVER_UNAVAILABLE || Date.now() > deadline) throw err;
      refusals++;
    }
    await new Promise((r) => setTimeout(r, RETRY_CONNECT_MS));
  }
}

/** Waits until every number in `want` is among `got`'s items. */
async function waitAll(got: Inbox<number>, want: Iterable<number>, timeoutMs: number, what: string, diagnose: () => Promise<string>): Promise<void> {
  const missing = new Set(want);
  const total = missing.size;
  let seen = 0;
  try {
    await got.waitFor((items) => {
      for (; seen < items.length; seen++) missing.delete(items[seen]!);
      return missing.size === 0;
    }, timeoutMs, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nmissing ${missing.size} of ${total}: ${[...missing].slice(0, 40).join(',')}\n${await diagnose()}`);
  }
}

/**
 * The scenario: load from a to a persistent subscriber on b, kill -9 of the stream leader
 * placed on the server `target` is connected to, then the checks (a), (b), (c).
 */
async function killUnderLoad(t: TestContext, target: 'a' | 'b', tag: string): Promise<void> {
  const got = new Inbox<number>();
  let killedAt = 0;
  const subOpts: IClientOptions = { clientId: `${tag}-sub`, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } };
  let present = false;
  const onSub = (c: MqttClient): void => {
    c.once('connect', (p) => (present = p.sessionPresent));
    c.on('message', (topic, payload) => {
      if (topic.startsWith(`${tag}/`)) got.push(Number(payload.toString()));
    });
  };
  const sub = await connectMqtt(`mqtt://127.0.0.1:${nodeB.plainPort}`, subOpts, 10_000, onSub);
  clients.push(sub);
  // How the subscriber's connection ended, if it did (relative to the kill).
  const subEnd: string[] = [];
  sub.on('disconnect', (p) => subEnd.push(`DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)} "${p.properties?.reasonString ?? ''}" at kill${Date.now() - killedAt >= 0 ? '+' : ''}${Date.now() - killedAt} ms`));
  sub.on('close', () => subEnd.push(`closed at kill${Date.now() - killedAt >= 0 ? '+' : ''}${Date.now() - killedAt} ms`));
  assert.deepEqual((await sub.subscribeAsync(`${tag}/#`, { qos: 1 })).map((g) => g.qos), [1]);
  const pub = await connectMqtt(`mqtt://127.0.0.1:${nodeA.plainPort}`, { clientId: `${tag}-pub`, protocolVersion: 5 });
  clients.push(pub);

  // The victim: the nats-server the target node is connected to, made the stream's leader.
  const serverOf = { a: natsNodeOf(nodeA), b: natsNodeOf(nodeB) };
  const victim = serverOf[target];
  await moveLeaderTo(victim);
  const onVictim = (['a', 'b'] as const).filter((k) => serverOf[k] === victim);
  console.log(`# [${tag}] node a on ${serverOf.a}, node b on ${serverOf.b}; killing ${victim} (the ${STREAM} leader; Bastion node(s) connected to it: ${onVictim.join(', ')})`);
  const status = { a: statusOf(nodeA), b: statusOf(nodeB) };
  const adv = leaderAdvisories();
  // What the stream republishes on the live subjects, seen by the test's own client (tells a NATS-side loss from a node-side one).
  let tapped = 0;
  const tap: Subscription = admin.subscribe(`bmq.1.${tag}.>`, { callback: () => void tapped++ });
  const diagnose = async (): Promise<string> => {
    let stored: string;
    try {
      const si = await jsm.streams.info(STREAM, { subjects_filter: `bms.1.${tag}.>` });
      stored = String(Object.values(si.state.subjects ?? {}).reduce((x, y) => x + y, 0));
    } catch (err) {
      stored = `unknown (${(err as Error).message})`;
    }
    const session = nodeB.server.broker.sessions.get(`${tag}-sub`);
    return (
      `stored in ${STREAM} on bms.1.${tag}.>: ${stored}; republished on bmq.1.${tag}.> as seen by the test's tap (on ${admin.info?.server_name}): ${tapped}; ` +
      `subscriber connected ${sub.connected}${subEnd.length > 0 ? ` (${subEnd.join(', ')})` : ''}; session on b: online ${session?.online}, in flight ${session?.inflightCount}, queued ${session?.queuedCount}; node b: ${JSON.stringify(nodeB.server.cluster!.status())}`
    );
  };

  // The load: WINDOW lanes, each publishing the next number and waiting for its PUBACK.
  const ackTimes: number[] = [];
  const acked: number[] = [];
  const refused: string[] = [];
  let next = 0;
  let killed: Promise<void> | null = null;
  const startedAt = Date.now();
  const lane = async (): Promise<void> => {
    while (next < MAX_MESSAGES && Date.now() - startedAt < MAX_LOAD_MS && refused.length === 0) {
      const n = next++;
      try {
        await pub.publishAsync(`${tag}/${n % 5}`, String(n), { qos: 1 });
      } catch (err) {
        refused.push(`${n}: ${(err as Error).message}`);
        return;
      }
      ackTimes.push(Date.now());
      acked.push(n);
      if (acked.length === KILL_AFTER && killed === null) {
        killedAt = Date.now();
        killed = cluster.kill(victim);
      }
    }
  };
  await withTimeout(Promise.all(Array.from({ length: WINDOW }, lane)), MAX_LOAD_MS + 30_000, 'the load to finish');
  const loadMs = Date.now() - startedAt;
  assert.notEqual(killed, null, 'the server was killed during the load');
  await killed;
  assert.deepEqual(refused, [], 'no publish refused');

  // (a) The longest silence between two consecutive PUBACKs.
  let maxGap = 0;
  for (let i = 1; i < ackTimes.length; i++) maxGap = Math.max(maxGap, ackTimes[i]! - ackTimes[i - 1]!);
  const afterKill = ackTimes.filter((at) => at > killedAt);
  const newLeader = adv.leaders.items.find((l) => l !== victim) ?? '(none announced)';
  adv.stop();
  const moved = (['a', 'b'] as const).map((k) => {
    const ev = status[k].items.find((e): e is Extract<NatsStatusEvent, { type: 'reconnect' }> => e.type === 'reconnect');
    return `node ${k} ${ev === undefined ? 'kept its connection' : `reconnected to ${ev.server}`}`;
  });
  console.log(
    `# [${tag}] ${acked.length} PUBACKed in ${loadMs} ms (${WINDOW} in flight, kill after ${KILL_AFTER}); longest gap between PUBACKs ${maxGap} ms; ` +
      `first PUBACK ${afterKill.length > 0 ? afterKill[0]! - killedAt : Number.NaN} ms after the kill; ${ackTimes.length - afterKill.length} before it; new leader ${newLeader}; ${moved.join(', ')}`,
  );
  assert.ok(afterKill.length > 0, 'PUBACKs came after the kill');
  assert.ok(maxGap <= ACCEPTED_GAP_MS, `longest gap between PUBACKs ${maxGap} ms (accepted: ${ACCEPTED_GAP_MS} ms)`);
  for (const k of onVictim) {
    await status[k].waitFor((e) => e.some((x) => x.type === 'reconnect'), 10_000, `node ${k} reconnects to a surviving server`);
    assert.notEqual(natsNodeOf(k === 'a' ? nodeA : nodeB), victim);
  }

  // (b) Every PUBACKed message reaches the subscriber, which stays connected; QoS 1 may repeat some.
  await t.test('(b) every PUBACKed message reaches the subscriber on node b, which stays connected', async () => {
    try {
      await waitAll(got, acked, 20_000, 'every PUBACKed message at the subscriber', diagnose);
      assert.equal(sub.connected, true, `the subscriber stayed connected throughout: ${subEnd.join(', ')}`);
    } finally {
      const distinct = new Set(got.items).size;
      const have = new Set(got.items);
      const missing = acked.filter((n) => !have.has(n)).length;
      console.log(
        `# [${tag}] subscriber: ${got.items.length} deliveries, ${distinct} distinct, ${got.items.length - distinct} repeats; ${acked.length} PUBACKed, ${missing} missing; ` +
          `the test's tap saw ${tapped} republished; subscriber ${sub.connected ? 'still connected' : `disconnected (${subEnd.join(', ')})`}`,
      );
    }
  });
  tap.unsubscribe();

  // (c) The killed server restarts on its store; the cluster works as before.
  await cluster.restart(victim);
  const restartedAt = Date.now();
  const info = await jsm.streams.info(STREAM);
  const peers = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)];
  assert.ok(peers.includes(victim), `${victim} is a peer of ${STREAM} again: ${JSON.stringify(info.cluster)}`);
  // New CONNECTs are admitted on both nodes (a claim in the R3 sessions bucket).
  const refusedFor: string[] = [];
  const fresh = new Map<'a' | 'b', MqttClient>();
  for (const [name, node] of [['a', nodeA], ['b', nodeB]] as const) {
    const admitted = await connectAdmitted(node, { clientId: `${tag}-fresh-${name}`, protocolVersion: 5 }, restartedAt + ADMIT_WITHIN_MS);
    fresh.set(name, admitted.client);
    refusedFor.push(`node ${name} ${admitted.refusals} (${admitted.refusedMs} ms)`);
  }
  // QoS 1 across nodes again: 100 from the new client on node b to the new one on node a.
  const freshA = fresh.get('a')!;
  const afterRestart = new Inbox<number>();
  freshA.on('message', (topic, payload) => {
    if (topic.startsWith(`${tag}-after/`)) afterRestart.push(Number(payload.toString()));
  });
  assert.deepEqual((await freshA.subscribeAsync(`${tag}-after/#`, { qos: 1 })).map((g) => g.qos), [1]);
  const more = Array.from({ length: 100 }, (_, k) => k);
  for (const n of more) await withTimeout(fresh.get('b')!.publishAsync(`${tag}-after/${n % 5}`, String(n), { qos: 1 }), 15_000, `PUBACK of ${n} after the restart`);
  await waitAll(afterRestart, more, 15_000, 'the messages published after the restart', diagnose);
  // The persistent session moves to node a and gets what was published while it was away.
  let resumedRefusals = '';
  await t.test('(c) the persistent session resumes on node a with the message published while it was away', async () => {
    await sub.endAsync();
    const away = MAX_MESSAGES + 1000;
    await withTimeout(pub.publishAsync(`${tag}/away`, String(away), { qos: 1 }), 15_000, 'PUBACK while the subscriber is away');
    const resumed = await connectAdmitted(nodeA, subOpts, restartedAt + ADMIT_WITHIN_MS, onSub);
    resumedRefusals = `, the resume on node a ${resumed.refusals} (${resumed.refusedMs} ms)`;
    assert.equal(present, true, 'the session is present on node a');
    await waitAll(got, [away], 15_000, 'the message published while the session was away', diagnose);
    await resumed.client.endAsync();
  });
  console.log(
    `# [${tag}] after restarting ${victim}: CONNECT admitted on both nodes (0x88 refusals before admission: ${refusedFor.join(', ')}${resumedRefusals}; all admitted by ${Date.now() - killedAt} ms after the kill); ` +
      '100 QoS 1 from node b to node a PUBACKed and delivered',
  );
}

test(`kill -9 of the ${STREAM} leader, the server node b (the subscriber's) is connected to, under QoS 1 load: PUBACKs resume within 10 s, nothing PUBACKed is lost, the restarted server rejoins`, { timeout: 120_000 }, async (t) => {
  await killUnderLoad(t, 'b', 'kill1');
});

test(`kill -9 of the ${STREAM} leader, the server node a (the publisher's) is connected to, under QoS 1 load: PUBACKs resume within 10 s, nothing PUBACKed is lost, the restarted server rejoins`, { timeout: 120_000 }, async (t) => {
  await killUnderLoad(t, 'a', 'kill2');
});
