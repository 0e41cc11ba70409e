/**
 * Pre-encoding of the packets the generator sends. Owns: turning bench parameters into
 * wire bytes once, before a run starts. Must not: be used per message (workers patch
 * packet ids, client ids and timestamps into these templates instead).
 */
import mqttPacket from 'mqtt-packet';

export type MqttVersion = 4 | 5;

export interface ConnectOptions {
  clientId: string;
  version: MqttVersion;
  clean: boolean;
  keepalive: number;
  /** v5 only: session expiry in seconds (0 = ends with the connection). */
  sessionExpiry?: number;
}

export function encodeConnect(o: ConnectOptions): Buffer {
  return mqttPacket.generate(
    {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: o.version,
      clientId: o.clientId,
      clean: o.clean,
      keepalive: o.keepalive,
      ...(o.version === 5 && o.sessionExpiry !== undefined ? { properties: { sessionExpiryInterval: o.sessionExpiry } } : {}),
    },
    { protocolVersion: o.version },
  );
}

export function encodeSubscribe(filter: string, qos: 0 | 1, version: MqttVersion, messageId = 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] }, { protocolVersion: version });
}

/** A PUBLISH with a zero-filled payload; for QoS 1 the packet id is 1 and is patched per message. */
export function encodePublish(topic: string, payloadSize: number, qos: 0 | 1, version: MqttVersion): Buffer {
  return mqttPacket.generate(
    { cmd: 'publish', topic, payload: Buffer.alloc(payloadSize, 0x61), qos, retain: false, dup: false, ...(qos > 0 ? { messageId: 1 } : {}) },
    { protocolVersion: version },
  );
}

/** `copies` concatenated copies of one packet, written with one syscall. */
export function repeatPacket(packet: Uint8Array, copies: number): Buffer {
  const out = Buffer.allocUnsafe(packet.length * copies);
  for (let i = 0; i < copies; i++) out.set(packet, i * packet.length);
  return out;
}

/**
 * A client-id placeholder of fixed width that workers overwrite with a counter, so one
 * CONNECT template serves thousands of distinct clients.
 */
export const CLIENT_ID_DIGITS = 10;
export function clientIdTemplate(prefix: string): string {
  return `${prefix}${'0'.repeat(CLIENT_ID_DIGITS)}`;
}
