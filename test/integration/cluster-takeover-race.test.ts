/**
 * Two CONNECTs with one client id racing on two nodes (issue 12): one real nats-server and
 * two in-process Bastion nodes, a and b. In each round the same client id connects to a and
 * to b at the same moment (MQTT.js v5, clean start, session expiry 0, both CONNECTs sent in
 * the same turn of the event loop; which goes first alternates). Once both have settled
 * (each either got CONNACK and maybe DISCONNECT 0x8E then close, or a refused CONNACK), a
 * round proves that:
 *  - exactly one connection is still connected, and the other ended as the protocol says
 *    (a CONNACK followed by DISCONNECT 0x8E Session taken over, or a refused CONNACK);
 *  - the survivor really owns the session: the sessions bucket names its node, only its
 *    node's registry owns the id, and a QoS 2 message published on the other node to a
 *    topic it subscribed to arrives exactly once (a marker published after it proves no
 *    late copy is on its way), and the loser receives nothing;
 *  - the survivor is still connected after all that.
 * Test 1: 90 rounds, each with its own id (`race-<i>`: the first claim of an id), five at a
 * time. Test 2: 10 rounds in a row reusing one id (`race-shared`), so every claim after the
 * first meets the record, epoch and registry state the previous round left. Every problem of every round is collected and
 * reported together; the outcome counts and runtimes are printed.
 *
 * No sleeps: every wait is on an event (CONNACK, DISCONNECT, close, a message, an
 * acknowledgement) with a timeout.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { SESSIONS_BUCKET } from '../../src/cluster/session-registry.js';
import { decodeOwnerRecord } from '../../src/cluster/session-record.js';
import { clientIdToKey, isCodecRefusal } from '../../src/cluster/subject-codec.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { connectMqtt, endQuietly, Inbox, killAllProcs, withTimeout } from './support.js';

const DISTINCT_ROUNDS = 90;
const SHARED_ROUNDS = 10;
const CONCURRENCY = 5;
const SHARED_ID = 'race-shared';
/** A claim waits at most 10 s for the cluster, plus 1.5 s for a previous owner to let go. */
const SETTLE_MS = 15_000;
const WAIT = 10_000;
/** Once both connections were admitted, how long the loser may take to be told 0x8E. */
const BOTH_ADMITTED_GRACE_MS = 3000;
const SESSION_TAKEN_OVER = 0x8e;

let nats: SingleNats;
let nodeA: TestBroker;
let nodeB: TestBroker;
let admin: NatsConnection;
let sessions: KV;
const publishers = new Map<TestBroker, MqttClient>();
const open: MqttClient[] = [];

before(async () => {
  nats = await startNatsServer();
  [nodeA, nodeB] = await Promise.all([
    startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'race-a' } }),
    startTestBroker({ cluster: { nats: { servers: [nats.url] }, nodeId: 'race-b' } }),
  ]);
  for (const node of [nodeA, nodeB]) {
    const pub = await connectMqtt(`mqtt://127.0.0.1:${node.plainPort}`, { clientId: `race-pub-${node.server.cluster!.nodeId}`, protocolVersion: 5 });
    open.push(pub);
    publishers.set(node, pub);
  }
  admin = await connect({ servers: [nats.url], name: 'test-admin' });
  sessions = await new Kvm(admin).open(SESSIONS_BUCKET);
});

after(async () => {
  await Promise.all(open.map((c) => endQuietly(c)));
  await admin?.close().catch(() => undefined);
  await nodeA?.stop();
  await nodeB?.stop();
  await nats?.stop();
  await killAllProcs();
});

interface Got {
  topic: string;
  payload: string;
}

/** One of the two connections of a round, and what happened to it. */
interface Contender {
  name: 'a' | 'b';
  node: TestBroker;
  client: MqttClient;
  /** The reason code of a CONNACK that admitted it. */
  connack: number | null;
  /** The code of a refused CONNACK (MQTT.js reports it as an error), or -1 for another error. */
  refusal: number | null;
  errors: string[];
  /** The reason code of a DISCONNECT the server sent. */
  kicked: number | null;
  closed: boolean;
  inbox: Inbox<Got>;
}

function contend(name: 'a' | 'b', node: TestBroker, clientId: string, changes: Inbox<string>): Contender {
  const client = mqtt.connect(`mqtt://127.0.0.1:${node.plainPort}`, {
    clientId,
    protocolVersion: 5,
    clean: true,
    properties: { sessionExpiryInterval: 0 },
    reconnectPeriod: 0,
    connectTimeout: SETTLE_MS + 5000,
  });
  open.push(client);
  const c: Contender = { name, node, client, connack: null, refusal: null, errors: [], kicked: null, closed: false, inbox: new Inbox<Got>() };
  client.on('connect', (p) => {
    c.connack = p.reasonCode ?? 0;
    changes.push(`${name}: CONNACK ${c.connack}`);
  });
  client.on('error', (err) => {
    const code = (err as Error & { code?: unknown }).code;
    if (c.connack === null) c.refusal = typeof code === 'number' ? code : -1;
    c.errors.push(err.message);
    changes.push(`${name}: error ${err.message}`);
  });
  client.on('disconnect', (p) => {
    c.kicked = p.reasonCode ?? 0;
    changes.push(`${name}: DISCONNECT ${c.kicked}`);
  });
  client.on('close', () => {
    c.closed = true;
    changes.push(`${name}: close`);
  });
  client.on('message', (topic, payload) => c.inbox.push({ topic, payload: payload.toString() }));
  return c;
}

const connected = (c: Contender): boolean => c.connack !== null && !c.closed;
const hex = (n: number | null): string => (n === null ? '-' : `0x${n.toString(16)}`);
const describe = (c: Contender): string => `${c.name}: connack ${hex(c.connack)}, refusal ${hex(c.refusal)}, DISCONNECT ${hex(c.kicked)}, ${c.closed ? 'closed' : 'open'}${c.errors.length > 0 ? `, errors ${c.errors.join(' | ')}` : ''}`;

interface RoundResult {
  round: number;
  clientId: string;
  winner: 'a' | 'b' | null;
  /** How the loser ended: `kicked` (CONNACK then 0x8E) or `refused 0x..`. */
  loser: string;
  ms: number;
  problems: string[];
}

/** The owner record of `clientId` in the sessions bucket (null: none). */
async function bucketRecord(clientId: string): Promise<{ node: string; epoch: number; revision: number } | null> {
  const key = clientIdToKey(clientId);
  assert.ok(!isCodecRefusal(key));
  const entry = await sessions.get(key);
  const record = entry === null || entry.operation !== 'PUT' ? null : decodeOwnerRecord(entry.value);
  return record === null ? null : { node: record.node, epoch: record.epoch, revision: entry!.revision };
}

/** Who owns `clientId`: the bucket's record, and each node's registry. */
async function ownership(clientId: string): Promise<string> {
  const r = await bucketRecord(clientId);
  return `bucket: ${r === null ? 'none' : `node ${r.node} epoch ${r.epoch} revision ${r.revision}`}; registry a owns: ${nodeA.server.cluster!.registry.owns(clientId)}, registry b owns: ${nodeB.server.cluster!.registry.owns(clientId)}`;
}

async function round(i: number, clientId: string): Promise<RoundResult> {
  const started = Date.now();
  const result: RoundResult = { round: i, clientId, winner: null, loser: '?', ms: 0, problems: [] };
  const changes = new Inbox<string>();
  // Both CONNECTs go out in the same turn of the event loop; which is first alternates.
  const pair = i % 2 === 0 ? [contend('a', nodeA, clientId, changes), contend('b', nodeB, clientId, changes)] : [contend('b', nodeB, clientId, changes), contend('a', nodeA, clientId, changes)];
  const [first, second] = pair as [Contender, Contender];
  const both = (): string => `${describe(first)}; ${describe(second)}`;
  try {
    try {
      // Neither is waiting for its CONNACK any more…
      await changes.waitFor(() => pair.every((c) => c.closed || c.connack !== null), SETTLE_MS, 'both CONNECTs answered');
      // …and one has ended: when both were admitted, the loser's 0x8E follows the second CONNACK at once (the fence).
      await changes.waitFor(() => pair.some((c) => c.closed), BOTH_ADMITTED_GRACE_MS, 'one of two admitted connections to end');
    } catch {
      result.problems.push(`not settled (${SETTLE_MS} ms for the CONNACKs, then ${BOTH_ADMITTED_GRACE_MS} ms): ${both()}; ${await ownership(clientId)}`);
      return result;
    }
    const survivors = pair.filter(connected);
    if (survivors.length !== 1) {
      result.problems.push(`${survivors.length} connections still connected: ${both()}; ${await ownership(clientId)}`);
      return result;
    }
    const survivor = survivors[0]!;
    const loser = survivor === first ? second : first;
    result.winner = survivor.name;
    if (loser.connack !== null) {
      result.loser = 'kicked';
      if (loser.kicked !== SESSION_TAKEN_OVER) result.problems.push(`the loser was admitted but not told 0x8E: ${describe(loser)}`);
    } else {
      result.loser = `refused ${hex(loser.refusal)}`;
      if (loser.refusal === null || loser.refusal < 0x80) result.problems.push(`the loser ended without a refusal code: ${describe(loser)}`);
    }

    // The survivor owns the client id: in the bucket, and in the registries.
    const other = survivor.node === nodeA ? nodeB : nodeA;
    const owner = (await bucketRecord(clientId))?.node ?? null;
    if (owner !== survivor.node.server.cluster!.nodeId) result.problems.push(`the sessions bucket names ${owner} as owner, not the survivor's node ${survivor.node.server.cluster!.nodeId}`);
    if (!survivor.node.server.cluster!.registry.owns(clientId)) result.problems.push(`the survivor's node ${survivor.name} does not own ${clientId} in its registry`);
    if (other.server.cluster!.registry.owns(clientId)) result.problems.push(`the loser's node also owns ${clientId} in its registry`);

    // A QoS 2 message from the other node arrives exactly once; the marker after it closes the window for a late copy.
    const base = `race/${clientId}/${i}`;
    const granted = await withTimeout(survivor.client.subscribeAsync(`${base}/#`, { qos: 2 }), WAIT, `SUBACK round ${i}`);
    assert.deepEqual(granted.map((g) => g.qos), [2], `SUBACK round ${i}`);
    const pub = publishers.get(other)!;
    await withTimeout(pub.publishAsync(`${base}/probe`, `probe ${i}`, { qos: 2 }), WAIT, `PUBCOMP of the probe of round ${i}`);
    await withTimeout(pub.publishAsync(`${base}/marker`, `marker ${i}`, { qos: 2 }), WAIT, `PUBCOMP of the marker of round ${i}`);
    try {
      await survivor.inbox.waitFor((items) => items.some((m) => m.topic === `${base}/marker`) || survivor.closed, WAIT, `the marker of round ${i}`);
    } catch {
      result.problems.push(`the survivor did not get the marker: ${describe(survivor)}`);
    }
    const probes = survivor.inbox.items.filter((m) => m.topic === `${base}/probe`).length;
    if (probes !== 1) result.problems.push(`the probe arrived ${probes} times at the survivor`);
    if (loser.inbox.items.length !== 0) result.problems.push(`the loser received ${loser.inbox.items.length} messages`);
    if (!connected(survivor)) result.problems.push(`the survivor was disconnected after settling: ${describe(survivor)}`);
    if (connected(loser)) result.problems.push(`the loser is connected again: ${describe(loser)}`);
    return result;
  } finally {
    result.ms = Date.now() - started;
    // A clean DISCONNECT (expiry 0: the session goes), so a later round with the same id starts afresh.
    await Promise.all(pair.map(async (c) => {
      if (connected(c)) await withTimeout(c.client.endAsync(), WAIT, 'client end').catch(() => c.client.end(true));
      else c.client.end(true);
      open.splice(open.indexOf(c.client), 1);
    }));
  }
}

/** Prints the figures of a set of rounds and fails with every problem found. */
function report(what: string, results: RoundResult[], totalMs: number): void {
  const tally = new Map<string, number>();
  for (const r of results) {
    const key = `winner ${r.winner ?? 'none'}, loser ${r.loser}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
  }
  const ms = results.map((r) => r.ms).sort((x, y) => x - y);
  const failed = results.filter((r) => r.problems.length > 0);
  console.log(
    `# ${what}: ${results.length} rounds in ${totalMs} ms; round time median ${ms[Math.floor(ms.length / 2)]} ms, max ${ms[ms.length - 1]} ms; ` +
      `${[...tally].map(([k, n]) => `${k}: ${n}`).join('; ')}; rounds with problems: ${failed.length}`,
  );
  for (const r of failed) console.log(`# round ${r.round} (${r.clientId}): ${r.problems.join(' / ')}`);
  assert.deepEqual(
    failed.map((r) => `round ${r.round} (${r.clientId}): ${r.problems.join(' / ')}`),
    [],
    `${failed.length} of ${results.length} rounds broke the one-owner rule`,
  );
}

test(`${DISTINCT_ROUNDS} rounds, each with its own client id (${CONCURRENCY} at a time), connecting to two nodes at once: exactly one connection stays, and it owns the session (QoS 2 exactly once)`, { timeout: 60_000 }, async () => {
  const started = Date.now();
  const results: RoundResult[] = [];
  for (let batch = 0; batch < DISTINCT_ROUNDS; batch += CONCURRENCY) {
    const rounds = Array.from({ length: Math.min(CONCURRENCY, DISTINCT_ROUNDS - batch) }, (_, k) => batch + k);
    results.push(...(await Promise.all(rounds.map((i) => round(i, `race-${i}`)))));
  }
  report('distinct ids', results, Date.now() - started);
});

test(
  `${SHARED_ROUNDS} rounds in a row reusing one client id, connecting to two nodes at once: exactly one connection stays, and it owns the session`,
  {
    timeout: 60_000,
  },
  async () => {
    const started = Date.now();
    const results: RoundResult[] = [];
    // One after the other: each round's claim meets the record the previous one left.
    for (let i = 0; i < SHARED_ROUNDS; i++) results.push(await round(i, SHARED_ID));
    report('one shared id', results, Date.now() - started);
  },
);
