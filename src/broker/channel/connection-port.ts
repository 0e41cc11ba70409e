/**
 * What a channel needs from its connection. transport/connection.ts implements it over a
 * socket; tests implement it over an in-memory recorder. Nothing here does I/O itself.
 */
export interface TlsPeer {
  commonName: string;
  serialNumber: string;
  fingerprint256: string;
}

export interface ConnectionPort {
  readonly remoteAddress: string;
  readonly listenerName: string;
  readonly allowAnonymous: boolean;
  /** The verified client certificate, or null. */
  readonly peer: TlsPeer | null;
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
