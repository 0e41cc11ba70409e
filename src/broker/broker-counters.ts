/**
 * The broker's counters: what was published, delivered, dropped and refused since start.
 * Owns: their names and starting values. Must not: compute rates or publish them
 * (broker/sys and the metrics endpoint read them); the code that sees a happening counts it.
 */
import type { SessionCounters } from './session/session.js';

export interface BrokerCounters extends SessionCounters {
  published: number;
  delivered: number;
  deniedAtDelivery: number;
  /** PUBLISH packets received from clients, by QoS (index = QoS), and their bytes (whole packets). */
  received: [number, number, number];
  receivedBytes: number;
  /** PUBLISH packets written to clients, by QoS, and their bytes (metrics, $SYS). */
  sent: [number, number, number];
  sentBytes: number;
  /** Sessions opened (CONNACK success), and the most clients connected at once. */
  connectionsAccepted: number;
  connectedPeak: number;
  /** QoS 0 messages dropped over a client's publish rate or bandwidth. */
  droppedQuota: number;
  /** Times a v3.1.1 QoS 1/2 publisher over its quota was slowed down (its reading paused) instead of refused. */
  slowedQuota: number;
  /** Messages the cluster could not store or send (NATS unreachable, store refused): refused to their publishers, or dropped (QoS 0). */
  refusedCluster: number;
}

/** All counters at zero. */
export function newBrokerCounters(): BrokerCounters {
  return {
    published: 0,
    delivered: 0,
    deniedAtDelivery: 0,
    droppedQueueFull: 0,
    droppedExpired: 0,
    droppedTooLarge: 0,
    received: [0, 0, 0],
    receivedBytes: 0,
    sent: [0, 0, 0],
    sentBytes: 0,
    connectionsAccepted: 0,
    connectedPeak: 0,
    droppedQuota: 0,
    slowedQuota: 0,
    refusedCluster: 0,
  };
}
