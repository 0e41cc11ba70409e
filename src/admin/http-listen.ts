/**
 * Binding the admin module's HTTP(S) servers (admin API, OCSP responder) and reading their
 * request bodies. Owns: the timeouts a slow client may not stretch, the bind with its
 * error, a close that does not wait for idle keep-alive connections, and the size-capped
 * body read. Must not: route or authenticate requests.
 */
import type { IncomingMessage, Server } from 'node:http';
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

/**
 * The request body, or 'too-large' as soon as it is known to exceed `limit` bytes (by its
 * content-length, or while it arrives). The caller answers 413 and should close the connection.
 */
export function readBodyCapped(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): void => {
      // SECURITY: nothing past the limit is buffered; the rest is drained and dropped.
      req.off('data', onData);
      req.resume();
      resolve('too-large');
    };
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) return tooLarge();
      chunks.push(chunk);
    };
    if (Number(req.headers['content-length'] ?? 0) > limit) return tooLarge();
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
