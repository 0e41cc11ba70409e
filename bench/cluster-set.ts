/**
 * The broker under test in a `--cluster` run: a fresh nats-server and the Bastion cluster
 * nodes on it, or Mosquitto or a standalone Bastion alone (the references). Owns: which
 * processes each variant starts (`serve --workers 1`, `serve --workers 2`, two nodes with
 * `--workers 1` each, or one process without a cluster section),
 * where the load connects (the second node for a latency publisher), summing their CPU and
 * RSS for the measured window, what the run left in JetStream, and stopping everything.
 * Must not: generate load (the scenarios do), or leave a process behind.
 */
import { MESSAGE_STREAM } from '../src/cluster/cluster-bus.js';
import { BrokerProcess, type LimitsMode } from './brokers.js';
import type { BenchPki } from './certs.js';
import { NatsServer } from './nats-server.js';
import type { BrokerUnderTest, Transport } from './scenario-api.js';
import type { Target } from './worker-api.js';

/**
 * `w1`: one node, `serve --workers 1` (a primary and one worker); `w2`: one node, `serve
 * --workers 2`; `nodes2`: two nodes (different node ids, data directories and ports), each
 * `--workers 1`, on the same NATS; `mosquitto`: Mosquitto alone, no NATS; `standalone`:
 * Bastion without a cluster section (no NATS, one process), what cluster mode adds to.
 */
export type ClusterVariant = 'w1' | 'w2' | 'nodes2' | 'mosquitto' | 'standalone';

export function clusterVariantLabel(v: ClusterVariant): string {
  switch (v) {
    case 'w1':
      return 'bastion cluster --workers 1';
    case 'w2':
      return 'bastion cluster --workers 2';
    case 'nodes2':
      return 'bastion cluster 2 nodes × --workers 1';
    case 'mosquitto':
      return 'mosquitto';
    case 'standalone':
      return 'bastion standalone (no cluster)';
    default: {
      const unreachable: never = v;
      return unreachable;
    }
  }
}

/** What a run left in NATS, read before the nats-server is stopped. */
export interface NatsCosts {
  /** BMQ_MSGS: messages and bytes stored (JetStream's stream info), null without the stream. */
  streamMessages: number | null;
  streamBytes: number | null;
  /** Every file in the JetStream store directory (the stream and the KV buckets). */
  storeDiskBytes: number;
  natsRssKb: number | null;
  /** "Slow Consumer Detected" lines from the nats-server over the run: it dropped messages to a node. */
  natsSlowConsumers: number;
}

export interface ClusterSetOptions {
  variant: ClusterVariant;
  transport: Transport;
  pki: BenchPki | null;
  limits: LimitsMode;
  /** `standalone` only: persistence.enabled (the durable row: true, as scenario 7). */
  persistence: boolean;
}

export class ClusterSet implements BrokerUnderTest {
  readonly exited: Promise<string>;

  private constructor(
    readonly variant: ClusterVariant,
    readonly nats: NatsServer | null,
    readonly nodes: BrokerProcess[],
  ) {
    this.exited = Promise.race([...nodes.map((n) => n.exited), ...(nats !== null ? [nats.exited] : [])]);
  }

  static async start(o: ClusterSetOptions): Promise<ClusterSet> {
    const pki = o.transport === 'tls' ? o.pki : null;
    if (o.variant === 'mosquitto') {
      const broker = await BrokerProcess.start({ kind: 'mosquitto', persistence: false, pki });
      return new ClusterSet(o.variant, null, [broker]);
    }
    if (o.variant === 'standalone') {
      const broker = await BrokerProcess.start({ kind: 'bastion', persistence: o.persistence, pki, limits: o.limits, raiseConnectionLimits: true });
      return new ClusterSet(o.variant, null, [broker]);
    }
    const nats = await NatsServer.start();
    const nodes: BrokerProcess[] = [];
    try {
      const specs = o.variant === 'w1' ? [{ nodeId: 'bench', workers: 1 }] : o.variant === 'w2' ? [{ nodeId: 'bench', workers: 2 }] : [{ nodeId: 'bench-a', workers: 1 }, { nodeId: 'bench-b', workers: 1 }];
      // One after the other: the first node creates the stream and buckets, the second finds them.
      for (const spec of specs) {
        nodes.push(
          await BrokerProcess.start({
            kind: 'bastion',
            // Cluster mode keeps sessions and stored messages in NATS, not in persistence's SQLite.
            persistence: false,
            pki,
            limits: o.limits,
            raiseConnectionLimits: true,
            cluster: { natsUrl: nats.url, nodeId: spec.nodeId, workers: spec.workers },
          }),
        );
      }
    } catch (e) {
      await Promise.all(nodes.map((n) => n.stop()));
      await nats.stop();
      throw e;
    }
    return new ClusterSet(o.variant, nats, nodes);
  }

  private node(i: number): BrokerProcess {
    const n = this.nodes[i] ?? this.nodes[0];
    if (n === undefined) throw new Error('no broker node');
    return n;
  }

  /** Where the load connects (the first node). */
  target(transport: Transport, pki: BenchPki | null): Target {
    return this.targetOf(this.node(0), transport, pki);
  }

  /** Where a latency publisher connects: the second node when there is one, else undefined (the same as target). */
  publisherTarget(transport: Transport, pki: BenchPki | null): Target | undefined {
    return this.nodes.length > 1 ? this.targetOf(this.node(1), transport, pki) : undefined;
  }

  private targetOf(node: BrokerProcess, transport: Transport, pki: BenchPki | null): Target {
    const port = transport === 'tls' ? node.tlsPort : node.tcpPort;
    if (port === null) throw new Error('no TLS listener');
    return { host: '127.0.0.1', port, tls: transport === 'tls' && pki !== null ? pki.client : null };
  }

  get alive(): boolean {
    return this.nodes.every((n) => n.alive) && (this.nats === null || this.nats.alive);
  }

  get serverGroups(): string | null {
    return this.node(0).serverGroups;
  }

  log(): string {
    const nodes = this.nodes.map((n, i) => `${this.nodes.length > 1 ? `node ${i + 1}: ` : ''}${n.log()}`);
    return [...nodes, ...(this.nats !== null && !this.nats.alive ? [`nats: ${this.nats.log()}`] : [])].join(' || ');
  }

  rssKb(): number | null {
    const all = this.nodes.map((n) => n.rssKb());
    return all.some((v) => v === null) ? null : all.reduce<number>((a, v) => a + (v ?? 0), 0);
  }

  cpuMs(): number | null {
    const all = this.nodes.map((n) => n.cpuMs());
    return all.some((v) => v === null) ? null : all.reduce<number>((a, v) => a + (v ?? 0), 0);
  }

  natsCpuMs(): number | null {
    return this.nats?.cpuMs() ?? null;
  }

  cpuParts(): Record<string, number> {
    // Two nodes: `a.primary`, `a.w1`, `b.primary`, `b.w1`.
    const prefix = (i: number): string => (this.nodes.length > 1 ? `${String.fromCharCode(97 + i)}.` : '');
    return this.nodes.reduce<Record<string, number>>((all, n, i) => ({ ...all, ...n.cpuParts(prefix(i)) }), {});
  }

  /** What the run left in NATS (the stream is BMQ_MSGS, MESSAGE_STREAM); null without NATS. */
  async natsCosts(): Promise<NatsCosts | null> {
    if (this.nats === null) return null;
    const stream = await this.nats.streamState(MESSAGE_STREAM);
    return { streamMessages: stream?.messages ?? null, streamBytes: stream?.bytes ?? null, storeDiskBytes: this.nats.storeDiskBytes(), natsRssKb: this.nats.rssKb(), natsSlowConsumers: this.nats.slowConsumerReports };
  }

  /** Stops the broker nodes (graceful, then SIGKILL), then the nats-server, and removes their directories. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.nats?.stop();
  }

  killNow(): void {
    for (const n of this.nodes) n.killNow();
    this.nats?.killNow();
  }
}
