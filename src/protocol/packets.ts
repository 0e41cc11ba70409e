/**
 * Our packet types: mqtt-packet's union keyed on `cmd`, re-exported so the rest of the
 * code never imports the codec library directly.
 */
export type {
  Packet,
  IConnectPacket as ConnectPacket,
  IConnackPacket as ConnackPacket,
  IPublishPacket as PublishPacket,
  IPubackPacket as PubackPacket,
  IPubrecPacket as PubrecPacket,
  IPubrelPacket as PubrelPacket,
  IPubcompPacket as PubcompPacket,
  ISubscribePacket as SubscribePacket,
  ISubackPacket as SubackPacket,
  IUnsubscribePacket as UnsubscribePacket,
  IUnsubackPacket as UnsubackPacket,
  IDisconnectPacket as DisconnectPacket,
  IAuthPacket as AuthPacket,
  ISubscription as SubscriptionRequest,
  UserProperties,
  QoS,
} from 'mqtt-packet';

export type ProtocolVersion = 3 | 4 | 5;
