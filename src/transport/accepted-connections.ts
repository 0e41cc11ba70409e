/**
 * What every listener (TCP, TLS, WebSocket) shares once a byte stream is accepted: wrap it
 * in a Connection, keep the set of live connections, and close them on shutdown (wait,
 * then destroy the rest). Owns: that bookkeeping and the RunningListener interface the
 * server uses for every listener. Must not: accept sockets or know their protocol.
 */
import type { AddressInfo, Server } from 'node:net';
import type { Broker } from '../broker/broker.js';
import type { ListenerConfig } from '../core/config.js';
import { Connection, type ByteStream, type PeerInfo } from './connection.js';
import type { TlsContextManager } from './tls-context.js';

export interface RunningListener {
  readonly config: ListenerConfig;
  readonly port: number;
  readonly host: string;
  readonly connections: Set<Connection>;
  /** The TLS context of a TLS or WSS listener (CRL hooks, reload), null for plaintext. */
  readonly tls: TlsContextManager | null;
  /** Stops accepting; existing connections stay. */
  stopAccepting(): Promise<void>;
  /** Waits up to `graceMs` for connections to close, then destroys the rest. */
  closeConnections(graceMs: number): Promise<void>;
}

export class AcceptedConnections {
  readonly connections = new Set<Connection>();
  /** Waiters for the last connection to close (graceful shutdown). */
  private drained: Array<() => void> = [];
  private readonly info: { name: string; allowAnonymous: boolean };
  private readonly onClosed = (c: Connection): void => {
    this.connections.delete(c);
    if (this.connections.size === 0) for (const resolve of this.drained.splice(0)) resolve();
  };

  constructor(
    private readonly broker: Broker,
    config: ListenerConfig,
  ) {
    this.info = { name: config.name, allowAnonymous: config.allowAnonymous };
  }

  /**
   * Starts MQTT on an accepted stream. Returns null (and destroys the stream) when the
   * broker is shutting down: a late arrival must not slip in after the goodbyes.
   */
  adopt(stream: ByteStream, peer: PeerInfo): Connection | null {
    if (this.broker.shuttingDown) {
      stream.destroy();
      return null;
    }
    const conn = new Connection(stream, peer, this.broker, this.info, this.onClosed);
    this.connections.add(conn);
    return conn;
  }

  /** Waits up to `graceMs` for every connection to close, then destroys the rest. */
  async closeConnections(graceMs: number): Promise<void> {
    if (this.connections.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.drained.push(resolve);
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
    }
    for (const c of this.connections) c.destroy();
  }
}

/**
 * Binds `server` to the listener's host and port and returns the bound address. A bind
 * failure (address in use, no permission) closes the TLS context's watchers and rejects.
 */
export function listenOn(server: Server, config: ListenerConfig, tlsContext: TlsContextManager | null): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => {
      tlsContext?.close();
      reject(err);
    };
    server.once('error', failed);
    server.listen(config.port, config.host, () => {
      server.off('error', failed);
      resolve(server.address() as AddressInfo);
    });
  });
}
