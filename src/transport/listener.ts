/**
 * TCP and TLS listeners. Owns: accepting sockets and the TLS policy.
 * SECURITY: TLS 1.2+ only, AEAD suites with forward secrecy only, client certificates
 * verified against the configured CA; a plaintext listener exists only when the config
 * says `insecure: true` (checked by the config schema).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Broker } from '../broker/broker.js';
import type { ListenerConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { AcceptedConnections, type RunningListener } from './accepted-connections.js';
import { peerOf } from './tls-identity.js';

/** TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are all AEAD. */
export const STRONG_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export type { RunningListener } from './accepted-connections.js';

export async function startListener(config: ListenerConfig, broker: Broker, logger: Logger, resolvePath: (p: string) => string): Promise<RunningListener> {
  const accepted = new AcceptedConnections(broker, config);
  const accept = (socket: net.Socket): void => {
    if (accepted.adopt(socket, { remoteAddress: socket.remoteAddress ?? 'unknown', peer: peerOf(socket) }) !== null) socket.setNoDelay(true);
  };

  let server: net.Server;
  if (config.protocol === 'mqtts') {
    const t = config.tls!;
    const options: tls.TlsOptions = {
      cert: readFileSync(resolvePath(t.cert)),
      key: readFileSync(resolvePath(t.key)),
      minVersion: t.minVersion,
      ciphers: t.ciphers ?? STRONG_TLS12_CIPHERS,
      honorCipherOrder: true,
      requestCert: t.clientCerts !== 'none',
      rejectUnauthorized: t.clientCerts === 'required',
      handshakeTimeout: Math.ceil(broker.config.connectTimeout * 1000),
      // Nagle off from accept on, so the handshake's small records and the first MQTT
      // packets do not wait for the peer's ACK (the Connection sets it again, harmlessly).
      noDelay: true,
    };
    if (t.ca !== undefined) options.ca = readFileSync(resolvePath(t.ca));
    const tlsServer = tls.createServer(options, accept);
    tlsServer.on('tlsClientError', (err, socket) => {
      logger.info({ listener: config.name, remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
    });
    server = tlsServer;
  } else {
    server = net.createServer({ noDelay: true }, accept);
  }
  server.on('error', (err) => logger.error({ listener: config.name, err: err.message }, 'listener error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    config,
    port: address.port,
    host: address.address,
    connections: accepted.connections,
    stopAccepting: async () => {
      // close() stops accepting at once; its callback waits for connections, which we do not.
      server.close();
    },
    closeConnections: (graceMs: number) => accepted.closeConnections(graceMs),
  };
}
