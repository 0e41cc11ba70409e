/**
 * Metrics of this node's place in a cluster (issue 12), read from the cluster node's
 * status at scrape time: which node this is (`bastion_cluster_node_info{node}`), the
 * live nodes, whether NATS is connected, the stores waiting for JetStream, and the
 * counters of messages from the cluster, stores, takeovers and wills of dead nodes.
 * Owns: those families. Must not: reach the cluster itself (the composition root hands in
 * a status reader), or label anything per client or per topic.
 *
 * SECURITY (cardinality): the only label is the node id, one value per node.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** The cluster node's status as the metrics read it (cluster-node.ts ClusterNodeStatus fits). */
export interface ClusterStatusView {
  nodeId: string;
  connected: boolean;
  /** Stored publishes waiting for JetStream's acknowledgement. */
  pendingStores: number;
  natsSubscriptions: number;
  bus: { received: number; duplicates: number; malformed: number; expired: number; stored: number; storeRetries: number; storeFailures: number };
  /** Client ids this node let go because another node claimed them. */
  takeoversAnswered: number;
  /** Nodes with a live lease, this one included. */
  liveNodes: number;
  orphanWillsPublished: number;
}

export class ClusterMetrics {
  private readonly info: Gauge<'node'>;
  private readonly gauges: Array<[Gauge, (s: ClusterStatusView) => number]>;
  private readonly counters: Array<[Counter, (s: ClusterStatusView) => number]>;

  constructor(
    registry: Registry,
    private readonly status: () => ClusterStatusView,
  ) {
    const registers = [registry];
    const gauge = (name: string, help: string): Gauge => new Gauge({ name, help, registers });
    const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
    this.info = new Gauge({ name: 'bastion_cluster_node_info', help: 'This cluster node (always 1), labelled with its node id.', labelNames: ['node'], registers });
    this.gauges = [
      [gauge('bastion_cluster_nodes_live', 'Cluster nodes with a live lease, as this node sees them (itself included).'), (s) => s.liveNodes],
      [gauge('bastion_cluster_nats_connected', 'Whether this node is connected to NATS (1) or not (0: new connections are refused).'), (s) => (s.connected ? 1 : 0)],
      [gauge('bastion_cluster_store_pending', 'QoS 1/2 publishes waiting for JetStream to confirm they are stored.'), (s) => s.pendingStores],
      [gauge('bastion_cluster_nats_subscriptions', 'NATS subscriptions this node holds for its clients\' filters.'), (s) => s.natsSubscriptions],
    ];
    this.counters = [
      [counter('bastion_cluster_messages_received_total', 'Messages from the cluster delivered into this node.'), (s) => s.bus.received],
      [counter('bastion_cluster_messages_duplicates_total', 'Messages from the cluster dropped as already seen (overlapping filters, retried stores).'), (s) => s.bus.duplicates],
      [counter('bastion_cluster_messages_malformed_total', 'Messages from the cluster dropped because they did not decode.'), (s) => s.bus.malformed],
      [counter('bastion_cluster_messages_expired_total', 'Messages from the cluster dropped because their expiry had passed.'), (s) => s.bus.expired],
      [counter('bastion_cluster_messages_stored_total', 'QoS 1/2 publishes JetStream confirmed as stored.'), (s) => s.bus.stored],
      [counter('bastion_cluster_store_retries_total', 'Stores to JetStream tried again after a failed attempt.'), (s) => s.bus.storeRetries],
      [counter('bastion_cluster_store_failures_total', 'Publishes refused because JetStream did not confirm the store in time.'), (s) => s.bus.storeFailures],
      [counter('bastion_cluster_takeovers_total', 'Client ids this node let go because a client connected with the same id on another node.'), (s) => s.takeoversAnswered],
      [counter('bastion_cluster_orphan_wills_total', 'Wills of connections on dead nodes this node published.'), (s) => s.orphanWillsPublished],
    ];
  }

  /** Reads the cluster node's status into the families. */
  refresh(): void {
    const s = this.status();
    this.info.reset();
    this.info.set({ node: s.nodeId }, 1);
    for (const [g, read] of this.gauges) g.set(read(s));
    for (const [c, read] of this.counters) {
      c.reset();
      c.inc(read(s));
    }
  }
}
