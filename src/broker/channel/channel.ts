/**
 * One client connection's protocol state machine. Owns: the MQTT conversation of one
 * connection (CONNECT to close), keep-alive, topic aliases, flow control, and turning
 * protocol errors into CONNACK/DISCONNECT codes in one place. Must not: touch sockets
 * (it talks to a ConnectionPort) or route messages (the broker does).
 */
import { BastionError, ProtocolViolation } from '../../core/errors.js';
import type { TimerHandle } from '../../core/clock.js';
import { encodePacket, encodePublishFields } from '../../protocol/codec.js';
import type { Packet, ProtocolVersion, QoS } from '../../protocol/packets.js';
import { ReasonCode, toV3ConnackCode } from '../../protocol/reason-codes.js';
import type { Broker, ChannelHandle, PublishQuota } from '../broker.js';
import type { Message } from '../message.js';
import type { AuthorizedClient, EnhancedAuthState } from '../ports.js';
import type { DeliveryTarget, PublishCache } from '../session/outbound.js';
import type { Session } from '../session/session.js';
import type { ConnectionPort } from './connection-port.js';
import type { KeepAliveWatched } from './keepalive-wheel.js';
import { handleConnect } from './handlers/connect.js';
import { handlePublish, handlePubrel } from './handlers/publish.js';
import { handlePuback, handlePubcomp, handlePubrec } from './handlers/acks.js';
import { handleSubscribe, handleUnsubscribe } from './handlers/subscribe.js';
import { handleAuth, handleDisconnect } from './handlers/session-control.js';
import { buildPublishPacket, encodeShared } from './publish-encoding.js';
import { ChannelLimits, maxSubscriptionsOf } from './channel-limits.js';
import { CONNECT_STAGE, emitConnectRefusal, emitDisconnected, type RefusalCause } from './security-emit.js';

export type ChannelState = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed';

export type { WillSpec as ChannelWill } from '../session/session.js';
import type { WillSpec as ChannelWill } from '../session/session.js';

export class Channel implements ChannelHandle, DeliveryTarget, KeepAliveWatched {
  state: ChannelState = 'awaiting-connect';
  version: ProtocolVersion = 4;
  clientId = '';
  session: Session | null = null;
  client: AuthorizedClient | null = null;
  will: ChannelWill | null = null;
  /** Client's Receive Maximum: our QoS 1/2 send window [MQTT-3.3.4-7]. */
  sendQuota: number;
  clientMaxPacketSize = Number.MAX_SAFE_INTEGER;
  /** Outbound topic aliases, when the client allows them. */
  outAliases: Map<string, number> | null = null;
  clientTopicAliasMax = 0;
  /** Inbound topic aliases [MQTT-3.3.2-12]. */
  inAliases: Map<number, string> | null = null;
  /** v5 Request Problem Information: false forbids reason strings on most packets. */
  problemInfo = true;
  /** QoS 1 acknowledgements waiting for durability, counted against our Receive Maximum. */
  pendingAcks = 0;
  /** Cluster: the last acknowledgement waiting for the cluster's store; later ones queue behind it, keeping their order [MQTT-4.6.0-2]. */
  ackChain: Promise<void> | null = null;
  enhancedAuth: { method: string; state: EnhancedAuthState } | null = null;
  private backlog: Array<[Packet, Buffer | null]> | null = null;
  /** Asynchronous CONNECT steps holding incoming packets (holdIncoming/releaseIncoming). */
  private holds = 0;
  private connectTimer: TimerHandle | null;
  /** The second this channel is filed under in the broker's keep-alive wheel (0: none). */
  keepAliveSlot = 0;
  /** Closes the session when the credential it was admitted with expires (a JWT's exp). */
  private credentialTimer: TimerHandle | null = null;
  private keepAliveMs = 0;
  /** True once a CONNECT was decoded: only then is a refusal answered with CONNACK. */
  private connectDecoded = false;
  lastActivity: number;
  /** Publish quota and slow-consumer state (channel-limits.ts), built on first need. */
  private limitState: ChannelLimits | null = null;
  /** A quota was set on this live connection (a defender throttle): it holds even with limits off. */
  throttled = false;
  /** The last topic routed from this client and its levels: a device repeats its topic, the router need not split it again. */
  private routedTopic = '';
  private routedLevels: readonly string[] = [''];

  constructor(
    readonly conn: ConnectionPort,
    readonly broker: Broker,
  ) {
    this.sendQuota = broker.config.maxInflight;
    this.lastActivity = broker.clock.now();
    // A connection that sends no complete CONNECT in time is closed [MQTT-3.1.4-*].
    this.connectTimer = broker.clock.setTimeout(() => {
      if (this.state === 'awaiting-connect') this.abortConnect('no CONNECT within the connect timeout');
      else if (this.state === 'authenticating') this.abortConnect('authentication did not finish within the connect timeout');
    }, broker.config.connectTimeout * 1000);
  }

  get congested(): boolean {
    return this.conn.congested;
  }

  onDrain(cb: () => void): void {
    this.conn.onDrain(cb);
  }

  /**
   * Entry point for every decoded packet. `frame` is its raw bytes (for UTF-8 checks), or
   * null for a PUBLISH or acknowledgement whose decoder checked its strings itself.
   */
  handlePacket(packet: Packet, frame: Buffer | null): void {
    if (this.state === 'closed') return;
    if (this.backlog !== null) {
      this.backlog.push([packet, frame]);
      return;
    }
    this.lastActivity = this.broker.clock.now();
    try {
      this.dispatch(packet, frame);
    } catch (err) {
      this.fail(err);
    }
  }

  private dispatch(packet: Packet, frame: Buffer | null): void {
    if (this.state === 'awaiting-connect') {
      // The first packet must be CONNECT [MQTT-3.1.0-1]; anything else: close, no answer.
      if (packet.cmd !== 'connect') {
        this.abortConnect(`first packet was ${packet.cmd}, not CONNECT`);
        return;
      }
      this.connectDecoded = true;
      handleConnect(this, packet, frameOf(packet, frame));
      return;
    }
    if (this.state === 'authenticating') {
      if (packet.cmd === 'auth') {
        handleAuth(this, packet);
        return;
      }
      throw new ProtocolViolation(ReasonCode.ProtocolError, `${packet.cmd} during authentication`);
    }
    switch (packet.cmd) {
      case 'publish':
        handlePublish(this, packet, frame);
        return;
      case 'puback':
        handlePuback(this, packet);
        return;
      case 'pubrec':
        handlePubrec(this, packet);
        return;
      case 'pubrel':
        handlePubrel(this, packet);
        return;
      case 'pubcomp':
        handlePubcomp(this, packet);
        return;
      case 'subscribe':
        handleSubscribe(this, packet, frameOf(packet, frame));
        return;
      case 'unsubscribe':
        handleUnsubscribe(this, packet, frameOf(packet, frame));
        return;
      case 'pingreq':
        this.send({ cmd: 'pingresp' });
        return;
      case 'disconnect':
        handleDisconnect(this, packet);
        return;
      case 'auth':
        handleAuth(this, packet);
        return;
      case 'connect':
        // A second CONNECT is a protocol violation [MQTT-3.1.0-2].
        throw new ProtocolViolation(ReasonCode.ProtocolError, 'second CONNECT');
      case 'connack':
      case 'suback':
      case 'unsuback':
      case 'pingresp':
        throw new ProtocolViolation(ReasonCode.ProtocolError, `${packet.cmd} is sent by servers only`);
      default: {
        const unreachable: never = packet;
        throw new ProtocolViolation(ReasonCode.ProtocolError, `unexpected packet ${(unreachable as Packet).cmd}`);
      }
    }
  }

  /**
   * Holds incoming packets while an asynchronous step of CONNECT runs (authentication, a
   * cluster claim). Holds nest: packets are replayed when the last one is released.
   */
  holdIncoming(): void {
    // One pause per outermost hold: releaseIncoming resumes once, when the last hold ends
    // (the connection counts its pauses, so a pause per hold left a socket paused for good
    // after an asynchronous login followed by a cluster claim).
    if (this.holds++ === 0) this.conn.pauseReading();
    this.backlog ??= [];
  }

  /** Replays packets held during authentication. */
  releaseIncoming(): void {
    if (this.holds > 0 && --this.holds > 0) return;
    const held = this.backlog;
    this.backlog = null;
    this.conn.resumeReading();
    if (held === null) return;
    for (const [packet, frame] of held) this.handlePacket(packet, frame);
  }

  send(packet: Packet): void {
    if (this.state === 'closed') return;
    this.conn.write(encodePacket(packet, this.version));
  }

  /** Strips reason strings and user properties when the client asked for no problem info [MQTT-3.1.2-29]. */
  reasonString(text: string): { reasonString: string } | undefined {
    return this.version === 5 && this.problemInfo ? { reasonString: text } : undefined;
  }

  /** Marks the channel connected and starts keep-alive. */
  connected(keepAliveSeconds: number): void {
    this.state = 'connected';
    this.connectTimer?.cancel();
    this.connectTimer = null;
    if (keepAliveSeconds > 0) {
      // The server allows one and a half keep-alive periods [MQTT-3.1.2-24].
      this.keepAliveMs = keepAliveSeconds * 1500;
      this.broker.keepAlive.watch(this, this.lastActivity + this.keepAliveMs);
    }
  }

  /**
   * SECURITY: a session lives no longer than its credential. Re-arms on every successful
   * (re-)authentication; `undefined` means the credential does not expire.
   */
  armCredentialExpiry(expiresAt: number | undefined): void {
    this.credentialTimer?.cancel();
    this.credentialTimer = null;
    if (expiresAt === undefined || this.state === 'closed') return;
    // setTimeout holds at most 2^31-1 ms; a later expiry is reached in steps.
    const delay = Math.max(0, expiresAt - this.broker.clock.now());
    this.credentialTimer = this.broker.clock.setTimeout(() => {
      if (this.broker.clock.now() < expiresAt) {
        this.armCredentialExpiry(expiresAt);
        return;
      }
      this.broker.logger.info({ clientId: this.clientId, remote: this.conn.remoteAddress }, 'credential expired; closing the session');
      this.expel(ReasonCode.MaximumConnectTime, 'the credential expired');
    }, Math.min(delay, 0x7fffffff));
  }

  /** The keep-alive wheel's question in this channel's deadline second: active since, or expired? */
  keepAliveDue(now: number): number | null {
    if (this.state !== 'connected') return null;
    const deadline = this.lastActivity + this.keepAliveMs;
    if (now < deadline) return deadline;
    this.disconnect(ReasonCode.KeepAliveTimeout, true);
    return null;
  }

  // ---- DeliveryTarget ----

  sendPublish(message: Message, qos: QoS, retainFlag: boolean, subscriptionIds: number[], packetId: number, dup: boolean, cache: PublishCache | null): boolean {
    if (this.state !== 'connected') return true;
    // The clock matters only for a message that expires (its remaining interval is sent).
    const now = message.expiresAt !== 0 ? this.broker.clock.now() : 0;
    let bytes: Buffer;
    if (cache !== null && !dup && this.outAliases === null) {
      bytes = encodeShared(cache, message, qos, retainFlag, packetId, this.version, now);
    } else if (this.outAliases === null && (this.version !== 5 || (message.properties === undefined && message.expiresAt === 0 && subscriptionIds.length === 0))) {
      // No property to send: encoded from the message's fields, without a packet object.
      bytes = encodePublishFields(message.topic, message.payload, qos, retainFlag, dup, packetId, this.version);
    } else {
      bytes = encodePacket(buildPublishPacket(message, qos, retainFlag, packetId, dup, this.version, subscriptionIds, this.outboundAlias(message.topic), now), this.version);
    }
    // Never send a packet larger than the client accepts [MQTT-3.1.2-24].
    if (bytes.length > this.clientMaxPacketSize) return false;
    this.conn.write(bytes);
    const counters = this.broker.counters;
    counters.sent[qos]++;
    counters.sentBytes += bytes.length;
    return true;
  }

  get limits(): ChannelLimits {
    return (this.limitState ??= new ChannelLimits(this));
  }

  /** The subscription cap, without building the limits of a client that has no role quota. */
  get maxSubscriptions(): number {
    return this.limitState?.maxSubscriptions ?? maxSubscriptionsOf(this.broker, undefined);
  }

  queueCongested(): void {
    this.limits.congested('queue');
  }

  queueEased(): void {
    this.limitState?.eased('queue');
  }

  /** The connection's write buffer drained (the slow-consumer clock stops). */
  socketEased(): void {
    this.limitState?.eased('socket');
  }

  sendPubrel(packetId: number): void {
    // v5: an explicit Success makes mqtt-packet write the short form (Remaining Length 2,
    // allowed by MQTT 5 §3.6.2.1, what Mosquitto sends); paho-mqtt 1.x crashes on the long one.
    this.send({ cmd: 'pubrel', messageId: packetId, reasonCode: ReasonCode.Success });
  }

  /** `topic` split at '/', from the memo while the client publishes to the same topic. */
  topicLevels(topic: string): readonly string[] {
    if (topic !== this.routedTopic) {
      this.routedTopic = topic;
      this.routedLevels = topic.split('/');
    }
    return this.routedLevels;
  }

  private outboundAlias(topic: string): { topic: string; alias: number } | null {
    const aliases = this.outAliases;
    if (aliases === null) return null;
    const known = aliases.get(topic);
    if (known !== undefined) return { topic: '', alias: known };
    if (aliases.size >= this.clientTopicAliasMax) return null;
    const alias = aliases.size + 1;
    aliases.set(topic, alias);
    return { topic, alias };
  }

  // ---- ChannelHandle ----

  kick(reasonCode: number, reason?: string): void {
    // A takeover is the client's own doing and a shutdown is the operator's: neither is a
    // security happening. Bans, revocations and operator kicks are.
    if (reasonCode === ReasonCode.SessionTakenOver || reasonCode === ReasonCode.ServerShuttingDown) this.disconnect(reasonCode, true, reason);
    else this.expel(reasonCode, reason ?? 'disconnected by the broker');
  }

  replacePublishQuota(quota: PublishQuota | null): void {
    this.throttled = quota !== null;
    this.limits.replaceQuota(quota);
  }

  takeWill(): ChannelWill | null {
    const will = this.will;
    this.will = null;
    return will;
  }

  // ---- closing ----

  /** Sends DISCONNECT (v5, when connected) and closes; the will follows unless suppressed. */
  disconnect(reasonCode: number, publishWill: boolean, reason?: string): void {
    if (this.state === 'closed') return;
    if (this.version === 5 && this.state === 'connected') {
      const props = reason !== undefined ? this.reasonString(reason) : undefined;
      this.send(props !== undefined ? { cmd: 'disconnect', reasonCode, properties: props } : { cmd: 'disconnect', reasonCode });
    }
    if (!publishWill) this.will = null;
    this.finish();
  }

  /**
   * The broker closes this live session on purpose (a ban, a revocation, an expired
   * credential, a quota, a protocol violation): reported as client.disconnected, then
   * DISCONNECT (v5) and the close; the will is published.
   */
  expel(reasonCode: number, reason: string): void {
    emitDisconnected(this, reasonCode, reason);
    this.disconnect(reasonCode, true, reason);
  }

  /**
   * Refuses a CONNECT with the right code for the client's version, then closes. `cause`
   * says which security event reports it (auth.failure or connection.refused, by stage).
   */
  refuseConnect(reasonCode: number, reason: string, cause: RefusalCause = CONNECT_STAGE): void {
    if (this.state === 'closed') return;
    emitConnectRefusal(this, reasonCode, reason, cause);
    this.broker.logger.info({ clientId: this.clientId, remote: this.conn.remoteAddress, reasonCode, reason }, 'connection refused');
    if (this.version === 5) {
      const props = this.reasonString(reason);
      this.send(props !== undefined ? { cmd: 'connack', sessionPresent: false, reasonCode, properties: props } : { cmd: 'connack', sessionPresent: false, reasonCode });
    } else {
      this.send({ cmd: 'connack', sessionPresent: false, returnCode: toV3ConnackCode(reasonCode) });
    }
    this.will = null;
    this.finish();
  }

  /** Closes without a word (before CONNECT, or the socket is gone). */
  abort(): void {
    this.finish();
  }

  /** Closes, without a CONNACK, a connection that never sent a usable CONNECT; reported as refused (scanners, slow openers). */
  private abortConnect(reason: string): void {
    if (this.state === 'closed') return;
    emitConnectRefusal(this, undefined, reason, CONNECT_STAGE);
    this.finish();
  }

  /** The socket closed underneath us: an abnormal close, so the will is published. */
  handleSocketClosed(): void {
    this.finish();
  }

  /** Maps any error thrown while handling a packet to the wire (one place, ARCHITECTURE idea 2). */
  fail(err: unknown): void {
    if (err instanceof ProtocolViolation) {
      this.broker.logger.info({ clientId: this.clientId, remote: this.conn.remoteAddress, reasonCode: err.reasonCode, err: err.message }, 'protocol violation');
      // Bytes that did not decode as a CONNECT (a bad frame, a malformed CONNECT) get no
      // CONNACK: we do not know the peer's version, and a v3.1.1 "server unavailable" to a
      // v5 client or a non-MQTT peer is wrong [MQTT-4.8.0-1]. Only an unsupported protocol
      // level is answered, as v3.1.1 requires [MQTT-3.1.2-2].
      if (this.state === 'awaiting-connect' && !this.connectDecoded && err.reasonCode !== ReasonCode.UnsupportedProtocolVersion) this.abortConnect(`no valid CONNECT: ${err.message}`);
      else if (this.state === 'awaiting-connect' || this.state === 'authenticating') this.refuseConnect(err.reasonCode, err.message);
      // A connected client breaking the protocol (0x81, 0x82...) is worth a record: probing or a broken device.
      else this.expel(err.reasonCode, err.message);
      return;
    }
    const code = err instanceof BastionError ? err.code : 'ERR_INTERNAL';
    this.broker.logger.error({ clientId: this.clientId, code, err: err instanceof Error ? err.stack : String(err) }, 'error while handling a packet');
    if (this.state === 'awaiting-connect' || this.state === 'authenticating') this.refuseConnect(ReasonCode.UnspecifiedError, 'internal error');
    else this.expel(ReasonCode.ImplementationSpecificError, 'internal error');
  }

  private finish(): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.backlog = null;
    this.connectTimer?.cancel();
    this.broker.keepAlive.unwatch(this);
    this.credentialTimer?.cancel();
    this.limitState?.stop();
    this.conn.end();
    if (wasConnected && this.session !== null) {
      const will = this.will;
      this.will = null;
      this.broker.closeSession(this.session, this, will);
    }
  }
}

/** The frame of a packet whose strings are checked against it (the decoder keeps it for every such packet). */
function frameOf(packet: Packet, frame: Buffer | null): Buffer {
  if (frame === null) throw new BastionError('ERR_INTERNAL', `${packet.cmd} arrived without its frame`);
  return frame;
}
