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
import { AcceptedConnections, peerInfoOf, startGuarded, type StartListener } from './accepted-connections.js';
import { TlsContextManager } from './tls-context.js';

export type { RunningListener } from './accepted-connections.js';

export const startListener: StartListener = async (config, broker, logger, resolvePath, dirs, guard) => {
  const accepted = new AcceptedConnections(broker, config);
  const tlsContext = config.protocol === 'mqtts' ? await TlsContextManager.create({ listener: config, resolvePath, ...dirs, logger, events: broker.events }) : null;
  const accept = (socket: net.Socket): void => {
    // Destroyed already: the TLS context manager refused the client certificate (and logged why).
    if (socket.destroyed) return;
    // Nagle is off already: the acceptor is created with noDelay, which sets it at accept.
    accepted.adopt(socket, peerInfoOf(socket, tlsContext));
  };
  if (tlsContext === null) return startGuarded(config, broker, guard, logger, accepted, null, accept);

  const tlsServer = tls.createServer({ ...tlsContext.serverOptions(), handshakeTimeout: Math.ceil(broker.config.connectTimeout * 1000) }, accept);
  tlsContext.attach(tlsServer);
  // Node's documented injection: the TLS server handshakes a socket someone else accepted.
  return startGuarded(config, broker, guard, logger, accepted, tlsContext, (socket) => tlsServer.emit('connection', socket));
};
