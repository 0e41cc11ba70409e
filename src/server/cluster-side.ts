/**
 * The cluster half of the composition root: connects this node to NATS before the broker
 * is built (the broker is made with the cluster port), fits the packet size limits to what
 * NATS carries, and joins the broker once it exists. Owns: those steps and their order.
 * Must not: route or store anything itself (cluster/ does).
 */
import { hostname } from 'node:os';
import type { BastionConfig } from '../core/config.js';
import { resolveNodeId } from '../core/cluster-config.js';
import type { Logger } from '../core/logger.js';
import { ClusterNode, ENVELOPE_HEADROOM_BYTES } from '../cluster/cluster-node.js';

/**
 * Connects to the cluster named by `config.cluster`, or returns null without one. The
 * MQTT packet size limits are lowered (in `config`) to what a NATS message can carry: a
 * larger PUBLISH is refused at the frame (0x95), before it costs anything, rather than
 * failing in NATS.
 */
export async function connectClusterSide(config: BastionConfig, baseDir: string, logger: Logger): Promise<ClusterNode | null> {
  const cluster = config.cluster;
  if (cluster === undefined) return null;
  const nodeId = resolveNodeId(cluster, hostname(), process.pid);
  const node = await ClusterNode.connect({ cluster, nodeId, baseDir, logger, storeDeadlineMs: cluster.storeTimeoutSeconds * 1000 });
  const carry = node.conn.features.maxPayload - ENVELOPE_HEADROOM_BYTES;
  if (config.mqtt.maxPacketSize > carry) {
    logger.warn({ configured: config.mqtt.maxPacketSize, natsMaxPayload: node.conn.features.maxPayload, now: carry }, 'mqtt.maxPacketSize lowered to what a NATS message carries (raise max_payload in nats-server to allow more)');
    config.mqtt.maxPacketSize = carry;
  }
  for (const l of config.listeners) {
    if (l.maxPacketSize !== undefined && l.maxPacketSize > carry) l.maxPacketSize = carry;
  }
  logger.info({ nodeId, server: node.conn.server(), natsVersion: node.conn.features.version, replicas: cluster.replicas }, 'joined the cluster');
  return node;
}
