/**
 * Binding the admin module's HTTP(S) servers (admin API, OCSP responder). Owns: the
 * timeouts a slow client may not stretch, the bind with its error, and a close that does
 * not wait for idle keep-alive connections. Must not: route or authenticate requests.
 */
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface BoundHttpServer {
  readonly host: string;
  readonly port: number;
  /** Stops accepting and drops open connections; resolves when the server is closed. */
  close(): Promise<void>;
}

/** Listens on host:port with bounded header/request times; rejects on a bind error. */
export async function listenHttp(server: Server, host: string, port: number): Promise<BoundHttpServer> {
  // SECURITY: a client may not hold a socket open by sending headers or a body slowly.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  // Every raw socket, for close(): closeAllConnections() knows only sockets that reached
  // HTTP, so on HTTPS one still in (or stalled before) its TLS handshake would hold close()
  // until the handshake timeout (120 s by default), and a broker's stop with it.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      }),
  };
}
