/**
 * TCP and TLS listeners. Owns: accepting sockets. The TLS policy (versions, suites,
 * client certificates, reload, tickets, PSK, stapling) lives in the TLS context manager.
 * SECURITY: a plaintext listener exists only when the config says `insecure: true`
 * (checked by the config schema).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Broker } from '../broker/broker.js';
import type { ListenerConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { AcceptedConnections, listenOn, type RunningListener } from './accepted-connections.js';
import { TlsContextManager } from './tls-context.js';
import { tlsSummaryOf } from './tls-identity.js';

export type { RunningListener } from './accepted-connections.js';

export async function startListener(config: ListenerConfig, broker: Broker, logger: Logger, resolvePath: (p: string) => string, dataDir: string): Promise<RunningListener> {
  const accepted = new AcceptedConnections(broker, config);
  const tlsContext = config.protocol === 'mqtts' ? await TlsContextManager.create({ listener: config, resolvePath, dataDir, logger }) : null;
  const accept = (socket: net.Socket): void => {
    // Destroyed already: the TLS context manager refused the client certificate (and logged why).
    if (socket.destroyed) return;
    const isTls = tlsContext !== null && socket instanceof tls.TLSSocket;
    const peer = isTls ? tlsContext.peerOf(socket) : null;
    // Nagle is off already: both servers are created with noDelay, which sets it at accept.
    accepted.adopt(socket, { remoteAddress: socket.remoteAddress ?? 'unknown', peer, ...(isTls ? { tls: tlsSummaryOf(socket) } : {}) });
  };

  let server: net.Server;
  if (tlsContext !== null) {
    const tlsServer = tls.createServer({ ...tlsContext.serverOptions(), handshakeTimeout: Math.ceil(broker.config.connectTimeout * 1000) }, accept);
    tlsContext.attach(tlsServer);
    server = tlsServer;
  } else {
    server = net.createServer({ noDelay: true }, accept);
  }
  server.on('error', (err) => logger.error({ listener: config.name, err: err.message }, 'listener error'));

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
}
