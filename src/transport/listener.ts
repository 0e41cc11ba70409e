/**
 * TCP and TLS listeners. Owns: accepting sockets. The TLS policy (versions, suites,
 * client certificates, reload, tickets, PSK, stapling) lives in the TLS context manager.
 * SECURITY: a plaintext listener exists only when the config says `insecure: true`
 * (checked by the config schema). The connection guard (limits, address lists, bans)
 * decides on the raw socket before the TLS server sees it: the TLS server never listens
 * itself, it is handed admitted sockets only.
 */
import type net from 'node:net';
import tls from 'node:tls';
import { AcceptedConnections, guardedAcceptor, listenOn, type StartListener } from './accepted-connections.js';
import { TlsContextManager } from './tls-context.js';
import { tlsSummaryOf } from './tls-identity.js';

export type { RunningListener } from './accepted-connections.js';

export const startListener: StartListener = async (config, broker, logger, resolvePath, dataDir, guard) => {
  const accepted = new AcceptedConnections(broker, config);
  const tlsContext = config.protocol === 'mqtts' ? await TlsContextManager.create({ listener: config, resolvePath, dataDir, logger, events: broker.events }) : null;
  const accept = (socket: net.Socket): void => {
    // Destroyed already: the TLS context manager refused the client certificate (and logged why).
    if (socket.destroyed) return;
    const isTls = tlsContext !== null && socket instanceof tls.TLSSocket;
    const peer = isTls ? tlsContext.peerOf(socket) : null;
    // Nagle is off already: the acceptor is created with noDelay, which sets it at accept.
    accepted.adopt(socket, { remoteAddress: socket.remoteAddress ?? 'unknown', peer, ...(isTls ? { tls: tlsSummaryOf(socket) } : {}) });
  };

  let serve: (socket: net.Socket) => void = accept;
  if (tlsContext !== null) {
    const tlsServer = tls.createServer({ ...tlsContext.serverOptions(), handshakeTimeout: Math.ceil(broker.config.connectTimeout * 1000) }, accept);
    tlsContext.attach(tlsServer);
    // Node's documented injection: the TLS server handshakes a socket someone else accepted.
    serve = (socket) => tlsServer.emit('connection', socket);
  }
  const server = guardedAcceptor(config, broker, guard, logger, serve);

  const address = await listenOn(server, config, tlsContext);
  return {
    config,
    port: address.port,
    host: address.address,
    connections: accepted.connections,
    tls: tlsContext,
    stopAccepting: async () => {
      // close() stops accepting at once; its callback waits for connections, which we do not.
      server.close();
      tlsContext?.close();
    },
    closeConnections: (graceMs: number) => accepted.closeConnections(graceMs),
  };
};
