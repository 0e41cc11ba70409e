/**
 * Python paho-mqtt 1.6.1 (Debian's, run by /usr/bin/python3) against a real Bastion over
 * mutual TLS, for MQTT 3.1.1 and 5.0: QoS 0/1/2, the will when the client's socket drops
 * (and no will after a normal DISCONNECT), retained messages, and a persistent session
 * that receives QoS 1 messages published while it was offline.
 *
 * The Python side is test/fixtures/paho/paho_agent.py: JSON commands in, JSON events out.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { Inbox, killAllProcs, PAHO_DIR, Proc } from './support.js';

const PYTHON = '/usr/bin/python3';
const AGENT = join(PAHO_DIR, 'paho_agent.py');
const WAIT_MS = 10000;

type PahoEvent =
  | { event: 'connected'; rc: number; session_present: boolean }
  | { event: 'subscribed'; mid: number; granted: number[] }
  | { event: 'published'; ref: string; mid: number }
  | { event: 'message'; topic: string; payload: string; qos: number; retain: boolean }
  | { event: 'disconnected'; rc: number }
  | { event: 'dropping' }
  | { event: 'error'; message: string };

type Message = Extract<PahoEvent, { event: 'message' }>;

interface AgentOptions {
  clientId: string;
  protocol: '311' | '5';
  cert?: 'client1' | 'client2';
  clean?: boolean;
  sessionExpiry?: number;
  will?: { topic: string; payload: string; qos: number };
}

let broker: TestBroker;

/** One paho client process. */
class PahoAgent {
  readonly events = new Inbox<PahoEvent>();
  private buffered = '';
  private refs = 0;

  private constructor(readonly proc: Proc) {
    proc.child.stdout!.on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        if (line.length > 0) this.events.push(JSON.parse(line) as PahoEvent);
      }
    });
    void proc.exited.then(() => this.events.poke());
  }

  /** Starts the agent and waits for its CONNACK. */
  static async start(o: AgentOptions): Promise<{ agent: PahoAgent; connected: Extract<PahoEvent, { event: 'connected' }> }> {
    const client = broker.pki.clients[o.cert ?? 'client1']!;
    const args = [AGENT, '--port', String(broker.tlsPort), '--cafile', broker.pki.caCert, '--cert', client.cert, '--key', client.key];
    args.push('--client-id', o.clientId, '--protocol', o.protocol, '--clean', o.clean === false ? '0' : '1');
    if (o.sessionExpiry !== undefined) args.push('--session-expiry', String(o.sessionExpiry));
    if (o.will !== undefined) args.push('--will-topic', o.will.topic, '--will-payload', o.will.payload, '--will-qos', String(o.will.qos));
    const agent = new PahoAgent(Proc.spawn(PYTHON, args, { label: `paho ${o.protocol} ${o.clientId}` }));
    const connected = (await agent.expect((e) => e.event === 'connected', 'CONNACK')) as Extract<PahoEvent, { event: 'connected' }>;
    assert.equal(connected.rc, 0, 'connection refused');
    return { agent, connected };
  }

  /** Waits for the first event matching `pred` (fails early if the process ends or reports an error). */
  async expect(pred: (e: PahoEvent) => boolean, what: string): Promise<PahoEvent> {
    const items = await this.events.waitFor(
      (events) => {
        if (events.some(pred)) return true;
        const err = events.find((e) => e.event === 'error');
        if (err !== undefined) throw new Error(`paho agent error while waiting for ${what}: ${JSON.stringify(err)}\n${this.proc.stderr}`);
        if (this.proc.result !== null) throw new Error(`paho agent exited (${this.proc.result.code}) before ${what}\n${this.proc.stderr}`);
        return false;
      },
      WAIT_MS,
      what,
    );
    return items.find(pred)!;
  }

  send(cmd: Record<string, unknown>): void {
    this.proc.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
  }

  async subscribe(topic: string, qos: number): Promise<number[]> {
    const before = this.events.items.filter((e) => e.event === 'subscribed').length;
    this.send({ op: 'subscribe', topic, qos });
    await this.events.waitFor((ev) => ev.filter((e) => e.event === 'subscribed').length > before, WAIT_MS, `SUBACK for ${topic}`);
    const subacks = this.events.items.filter((e) => e.event === 'subscribed') as Array<Extract<PahoEvent, { event: 'subscribed' }>>;
    return subacks[before]!.granted;
  }

  /** Publishes and waits until paho reports the flow complete (PUBACK / PUBCOMP; QoS 0: written). */
  async publish(topic: string, payload: string, qos: number, retain = false): Promise<void> {
    const ref = `r${++this.refs}`;
    this.send({ op: 'publish', ref, topic, payload, qos, retain });
    await this.expect((e) => e.event === 'published' && e.ref === ref, `acknowledgement of ${ref} (${topic})`);
  }

  messages(): Message[] {
    return this.events.items.filter((e): e is Message => e.event === 'message');
  }

  async waitMessages(n: number, what: string): Promise<Message[]> {
    await this.events.waitFor(() => this.messages().length >= n, WAIT_MS, what);
    return this.messages();
  }

  /** Normal DISCONNECT, then the process exits. */
  async disconnect(): Promise<void> {
    this.send({ op: 'disconnect' });
    this.proc.child.stdin!.end();
    const r = await this.proc.waitExit(WAIT_MS);
    assert.equal(r.code, 0, `paho agent failed:\n${r.stderr}`);
  }

  /** Ends the process without DISCONNECT; the OS closes the socket. */
  async drop(): Promise<void> {
    this.send({ op: 'drop' });
    const r = await this.proc.waitExit(WAIT_MS);
    assert.equal(r.code, 0, `paho agent failed:\n${r.stderr}`);
  }
}

const uid = (): string => randomBytes(4).toString('hex');

before(async () => {
  broker = await startTestBroker({ clients: ['client1', 'client2'] });
});

after(async () => {
  await killAllProcs();
  await broker?.stop();
});

for (const protocol of ['311', '5'] as const) {
  describe(`paho-mqtt 1.6.1, MQTT ${protocol === '5' ? '5.0' : '3.1.1'}, mutual TLS`, () => {
    test('QoS 0, 1 and 2 round trips', async () => {
      const id = uid();
      const { agent: sub } = await PahoAgent.start({ clientId: `paho-sub-${id}`, protocol });
      const { agent: pub } = await PahoAgent.start({ clientId: `paho-pub-${id}`, protocol, cert: 'client2' });
      try {
        for (const qos of [0, 1, 2]) {
          assert.deepEqual(await sub.subscribe(`paho/${id}/q${qos}`, qos), [qos]);
        }
        for (const qos of [0, 1, 2]) await pub.publish(`paho/${id}/q${qos}`, `payload qos ${qos}`, qos);
        const got = await sub.waitMessages(3, 'three messages');
        assert.deepEqual(
          got.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain })).sort((a, b) => a.qos - b.qos),
          [0, 1, 2].map((qos) => ({ topic: `paho/${id}/q${qos}`, payload: `payload qos ${qos}`, qos, retain: false })),
        );
      } finally {
        await pub.disconnect();
        await sub.disconnect();
      }
    });

    test('the will is delivered when the socket drops, and not after a normal DISCONNECT', async () => {
      const id = uid();
      const willTopic = `paho/${id}/will`;
      const { agent: watcher } = await PahoAgent.start({ clientId: `paho-watch-${id}`, protocol, cert: 'client2' });
      try {
        await watcher.subscribe(`paho/${id}/#`, 1);
        // A client that says goodbye properly: its will is discarded [MQTT-3.14.4-3].
        const { agent: polite } = await PahoAgent.start({ clientId: `paho-polite-${id}`, protocol, will: { topic: willTopic, payload: 'polite will', qos: 1 } });
        await polite.disconnect();
        // A client whose socket just goes away: its will is published [MQTT-3.1.2-8].
        const { agent: dropped } = await PahoAgent.start({ clientId: `paho-will-${id}`, protocol, will: { topic: willTopic, payload: 'gone without a word', qos: 1 } });
        await dropped.drop();
        const [first] = await watcher.waitMessages(1, 'the will');
        assert.deepEqual(
          { topic: first!.topic, payload: first!.payload, qos: first!.qos },
          { topic: willTopic, payload: 'gone without a word', qos: 1 },
          'the first message on the will topic must be the dropped client\'s will (the polite client\'s will must not be sent)',
        );
      } finally {
        await watcher.disconnect();
      }
    });

    test('a retained message is delivered to a later subscriber', async () => {
      const id = uid();
      const topic = `paho/${id}/retained`;
      const { agent: pub } = await PahoAgent.start({ clientId: `paho-rpub-${id}`, protocol, cert: 'client2' });
      await pub.publish(topic, 'retained state', 1, true);
      await pub.disconnect();
      const { agent: sub } = await PahoAgent.start({ clientId: `paho-rsub-${id}`, protocol });
      try {
        await sub.subscribe(topic, 1);
        const [m] = await sub.waitMessages(1, 'the retained message');
        assert.deepEqual({ topic: m!.topic, payload: m!.payload, qos: m!.qos, retain: m!.retain }, { topic, payload: 'retained state', qos: 1, retain: true });
      } finally {
        await sub.disconnect();
      }
    });

    test('a persistent session receives the QoS 1 messages published while it was offline', async () => {
      const id = uid();
      const clientId = `paho-persist-${id}`;
      const topic = `paho/${id}/offline`;
      // v3.1.1: clean session 0. v5: clean start 0 and a Session Expiry Interval.
      const persistent = protocol === '5' ? { clean: false, sessionExpiry: 300 } : { clean: false };
      const first = await PahoAgent.start({ clientId, protocol, ...persistent });
      assert.equal(first.connected.session_present, false);
      assert.deepEqual(await first.agent.subscribe(topic, 1), [1]);
      await first.agent.disconnect();

      const { agent: pub } = await PahoAgent.start({ clientId: `paho-ppub-${id}`, protocol, cert: 'client2' });
      const N = 10;
      for (let i = 0; i < N; i++) await pub.publish(topic, `offline ${i}`, 1);
      await pub.disconnect();

      const second = await PahoAgent.start({ clientId, protocol, ...persistent });
      try {
        assert.equal(second.connected.session_present, true, 'the broker must resume the session');
        const got = await second.agent.waitMessages(N, `${N} queued messages`);
        assert.deepEqual(
          got.map((m) => [m.payload, m.qos]),
          Array.from({ length: N }, (_, i) => [`offline ${i}`, 1]),
          'every message, once, in order, at QoS 1',
        );
      } finally {
        await second.agent.disconnect();
      }
      // Clean up: a clean-start connection ends the stored session.
      const cleanup = await PahoAgent.start({ clientId, protocol, clean: true });
      assert.equal(cleanup.connected.session_present, false);
      await cleanup.agent.disconnect();
    });
  });
}
