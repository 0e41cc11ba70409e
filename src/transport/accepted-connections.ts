/**
 * What every listener (TCP, TLS, WebSocket) shares: the guarded accept (the connection
 * guard asked about each raw socket before TLS or HTTP sees it), and once a byte stream is
 * accepted, wrapping it in a Connection, keeping the set of live connections, and closing
 * them on shutdown (wait, then destroy the rest). Owns: that bookkeeping and the
 * RunningListener interface the server uses for every listener. Must not: know the
 * protocol spoken on the sockets.
 */
import net, { type AddressInfo, type Server } from 'node:net';
import tls from 'node:tls';
import type { Broker } from '../broker/broker.js';
import type { ListenerConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { ConnectionGuard } from '../security/limits/connection-guard.js';
import { Connection, type ByteStream, type ListenerInfo, type PeerInfo } from './connection.js';
import type { TlsContextManager } from './tls-context.js';
import { tlsSummaryOf } from './tls-identity.js';

/** How the server starts every kind of listener (TCP/TLS in listener.ts, ws/wss in websocket.ts). */
export type StartListener = (
  config: ListenerConfig,
  broker: Broker,
  logger: Logger,
  resolvePath: (p: string) => string,
  /** The data directory (default ticket key file) and the built-in PKI's directory (its CRLs apply to a listener that trusts it). */
  dirs: { dataDir: string; pkiDir: string },
  /** One guard shared by every listener: maxTotal and the per-address counts span them all. */
  guard: ConnectionGuard,
) => Promise<RunningListener>;

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
  private readonly info: ListenerInfo;
  private readonly onClosed = (c: Connection): void => {
    this.connections.delete(c);
    if (this.connections.size === 0) for (const resolve of this.drained.splice(0)) resolve();
  };

  constructor(
    private readonly broker: Broker,
    config: ListenerConfig,
  ) {
    this.info = { name: config.name, allowAnonymous: config.allowAnonymous, maxPacketSize: config.maxPacketSize ?? broker.config.maxPacketSize };
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
 * What the listener knows of the peer of an accepted socket: its address and, on a TLS
 * socket, the verified identity and the negotiated parameters (read once, here).
 */
export function peerInfoOf(socket: net.Socket, tlsContext: TlsContextManager | null): PeerInfo {
  const remoteAddress = socket.remoteAddress ?? 'unknown';
  if (tlsContext === null || !(socket instanceof tls.TLSSocket)) return { remoteAddress, peer: null };
  return { remoteAddress, peer: tlsContext.peerOf(socket), tls: tlsSummaryOf(socket) };
}

/**
 * Binds the guarded acceptor of a listener and returns the listener running: every kind
 * of listener (TCP/TLS, ws/wss) ends here. `serve` receives each admitted socket;
 * `stopServing` closes what serves them (the TLS or HTTP server) when accepting stops.
 */
export async function startGuarded(
  config: ListenerConfig,
  broker: Broker,
  guard: ConnectionGuard,
  logger: Logger,
  accepted: AcceptedConnections,
  tlsContext: TlsContextManager | null,
  serve: (socket: net.Socket) => void,
  stopServing?: () => void,
): Promise<RunningListener> {
  const acceptor = guardedAcceptor(config, broker, guard, logger, serve);
  const address = await listenOn(acceptor, config, tlsContext);
  return {
    config,
    port: address.port,
    host: address.address,
    connections: accepted.connections,
    tls: tlsContext,
    stopAccepting: async () => {
      // close() stops accepting at once; its callback waits for connections, which we do not.
      acceptor.close();
      stopServing?.();
      tlsContext?.close();
    },
    closeConnections: (graceMs: number) => accepted.closeConnections(graceMs),
  };
}

/**
 * Binds `server` to the listener's host and port and returns the bound address. A bind
 * failure (address in use, no permission) closes the TLS context's watchers and rejects.
 */
function listenOn(server: Server, config: ListenerConfig, tlsContext: TlsContextManager | null): Promise<AddressInfo> {
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

/**
 * The listening socket of every listener: a plain net.Server that asks `guard` about each
 * accepted socket and hands only admitted ones to `serve` (the MQTT accept, or the TLS /
 * HTTP server through its documented `emit('connection', socket)` injection). The slot an
 * admitted socket holds is released when the raw socket closes ('close' fires once, also
 * under a TLS or HTTP server that wrapped it).
 *
 * SECURITY: a refused socket is reset at once, before a TLS server has seen it: no
 * ServerHello, no key exchange, no HTTP parser, no memory beyond the accept. The refusal
 * becomes a security event (limit.hit for counts and rates, connection.refused for
 * address lists and bans); it is not logged line by line, since a flood would flood the
 * log too (the audit log aggregates the events).
 */
function guardedAcceptor(config: ListenerConfig, broker: Broker, guard: ConnectionGuard, logger: Logger, serve: (socket: net.Socket) => void): net.Server {
  const listener = config.name;
  const listenerMax = config.maxConnections;
  const server = net.createServer({ noDelay: true }, (socket) => {
    // This read also caches the address on the raw socket: once Node has destroyed a refused
    // TLS socket, that cache is the only place its address is still known (tls-context.ts).
    const verdict = guard.admit(socket.remoteAddress ?? '', listener, listenerMax, Date.now());
    if (verdict.ok) {
      socket.once('close', verdict.release);
      serve(socket);
      return;
    }
    // A reset is the cheapest goodbye (no FIN handshake, no TIME_WAIT here); errors after
    // it have nowhere to go but must not become uncaught.
    socket.on('error', ignoreError);
    socket.resetAndDestroy();
    if (verdict.kind === 'limit') {
      broker.events.emit({ type: 'limit.hit', limit: verdict.limit, listener, remoteAddress: verdict.address, action: 'refused', count: 1, detail: verdict.reason });
    } else {
      broker.events.emit({ type: 'connection.refused', stage: 'accept', listener, remoteAddress: verdict.address, reason: verdict.reason });
    }
    logger.debug({ listener, remote: verdict.address, refusal: verdict.limit }, 'connection refused at accept');
  });
  server.on('error', (err) => logger.error({ listener, err: err.message }, 'listener error'));
  return server;
}

function ignoreError(): void {
  /* the socket is already destroyed */
}
