/**
 * What a channel needs from its connection. transport/connection.ts implements it over a
 * socket; tests implement it over an in-memory recorder. Nothing here does I/O itself.
 */
import type { TlsSummary } from '../../core/security-events.js';

/** What a verified client certificate says, as the authorization layer sees it. */
export interface PeerCertificate {
  commonName: string;
  /** Hex, as OpenSSL prints it. */
  serialNumber: string;
  /** SHA-256 of the DER, colon-separated hex. */
  fingerprint256: string;
  /** Distinguished names in RFC 4514-like `CN=a, OU=b` form. */
  issuer: string;
  subject: string;
  organizationalUnits: string[];
  sans: { dns: string[]; uri: string[]; ip: string[]; email: string[] };
}

/** How a TLS peer's identity was derived. */
export type IdentitySource = 'cn' | 'san-uri' | 'san-dns' | 'subject' | 'psk';

/**
 * The client identity a TLS handshake proved: a verified certificate or a PSK identity.
 * SECURITY: built only by the transport from what OpenSSL verified.
 */
export interface TlsPeer {
  method: 'certificate' | 'psk';
  /**
   * The identity (the principal) mapped per the listener's `identity` option, or the PSK
   * identity; null when the certificate has no value for the mapping (refused at CONNECT).
   */
  identity: string | null;
  source: IdentitySource;
  /** The listener's `clientIdMustMatch`: the client id must equal `identity`. */
  clientIdMustMatch: boolean;
  certificate?: PeerCertificate;
  pskIdentity?: string;
}

export interface ConnectionPort {
  readonly remoteAddress: string;
  readonly listenerName: string;
  readonly allowAnonymous: boolean;
  /** The listener's maximum packet size, announced in CONNACK; absent: mqtt.maxPacketSize. */
  readonly maxPacketSize?: number;
  /** The verified client certificate, or null. */
  readonly peer: TlsPeer | null;
  /** The negotiated TLS version, cipher and resumption (security event records); absent or null on plaintext. */
  readonly tls?: TlsSummary | null;
  /** True while the write buffer is over its high-water mark. */
  readonly congested: boolean;
  /** Queues bytes; they go out in one write per socket per event-loop turn. */
  write(bytes: Buffer): void;
  /** Flushes queued bytes, then closes. */
  end(): void;
  pauseReading(): void;
  resumeReading(): void;
  /** Calls `cb` once when the write buffer drains or the connection closes. */
  onDrain(cb: () => void): void;
}
