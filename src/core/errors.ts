/**
 * Error types with stable ERR_* codes. Owns: the one protocol error type that carries a
 * reason code. Must not: know about sockets or packets.
 */
export class BastionError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'BastionError';
    this.code = code;
  }
}

/**
 * A violation of the MQTT protocol by the peer. Thrown by framing, codec and handlers;
 * caught in one place (the channel dispatcher) and turned into DISCONNECT or CONNACK.
 */
export class ProtocolViolation extends BastionError {
  readonly reasonCode: number;
  constructor(reasonCode: number, message: string) {
    super('ERR_MQTT_PROTOCOL', message);
    this.name = 'ProtocolViolation';
    this.reasonCode = reasonCode;
  }
}

export class ConfigError extends BastionError {
  constructor(message: string) {
    super('ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}
