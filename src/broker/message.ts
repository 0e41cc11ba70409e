/**
 * The application message as the broker routes it, independent of protocol version.
 */
import type { QoS, UserProperties } from '../protocol/packets.js';

/** The PUBLISH properties that travel with a message from publisher to subscriber. */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: UserProperties;
}

export interface Message {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  /** Forwarded v5 properties; undefined when the publisher sent none (the common case). */
  properties: MessageProperties | undefined;
  /** Absolute expiry in ms since the epoch; 0 means the message never expires. */
  expiresAt: number;
  /** Client id of the publisher, for no-local [MQTT-3.8.3-3]; '' for the broker itself. */
  origin: string;
  /**
   * Cluster: the message's sequence in the cluster's message stream (QoS 1/2 that came
   * through the cluster), so a persistent session can record how far it got; absent otherwise.
   */
  streamSeq?: number;
}
