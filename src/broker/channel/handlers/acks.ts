/**
 * Acknowledgements from the client for messages we sent: PUBACK, PUBREC, PUBCOMP.
 * An acknowledgement for an unknown packet id is ignored (v3) or answered as the spec
 * says (v5 PUBREL with PacketIdentifierNotFound after PUBREC).
 */
import type { PubackPacket, PubcompPacket, PubrecPacket } from '../../../protocol/packets.js';
import { ReasonCode } from '../../../protocol/reason-codes.js';
import type { Channel } from '../channel.js';

export function handlePuback(ch: Channel, packet: PubackPacket): void {
  ch.session!.complete(packet.messageId ?? 0, 'publish-sent');
}

export function handlePubrec(ch: Channel, packet: PubrecPacket): void {
  const packetId = packet.messageId ?? 0;
  const failed = (packet.reasonCode ?? 0) >= 0x80;
  if (!ch.session!.received(packetId, failed) && !failed) {
    if (ch.version === 5) ch.send({ cmd: 'pubrel', messageId: packetId, reasonCode: ReasonCode.PacketIdentifierNotFound });
    else ch.send({ cmd: 'pubrel', messageId: packetId });
  }
}

export function handlePubcomp(ch: Channel, packet: PubcompPacket): void {
  ch.session!.complete(packet.messageId ?? 0, 'pubrel-sent');
}
