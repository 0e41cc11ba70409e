/**
 * MQTT over WebSocket (ws) and secure WebSocket (wss) listeners. Owns: the HTTP server,
 * the upgrade decision (path, subprotocol), the WebSocket limits, and handing each
 * upgraded WebSocket to a Connection as a byte stream.
 * Must not: parse MQTT (the Connection does, exactly as for TCP).
 *
 * SECURITY: a request for another path, or one that offers no MQTT subprotocol, is refused
 * with an HTTP status before any WebSocket exists and never reaches the broker. A frame
 * larger than one maximum MQTT packet (plus a little room for small packets sent with it)
 * is refused from its header, before it is buffered. An HTTP request that never upgrades
 * is closed after mqtt.connectTimeout. The peer identity of a wss client is the
 * certificate verified on the TLS socket under the HTTP request; HTTP headers (such as
 * X-Forwarded-For) are never trusted for identity or address. The connection guard decides
 * on the raw TCP socket before the HTTP(S) server (and so TLS and the HTTP parser) sees it.
 */
import http, { STATUS_CODES } from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { DEFAULT_WS_PATH } from '../core/config.js';
import { AcceptedConnections, peerInfoOf, startGuarded, type StartListener } from './accepted-connections.js';
import { TlsContextManager } from './tls-context.js';
import { WebSocketByteStream } from './ws-byte-stream.js';

/** [MQTT-6.0.0-3] clients offer "mqtt"; "mqttv3.1" is what older 3.1-era clients offer. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'] as const;
/**
 * Room above mqtt.maxPacketSize in one WebSocket message: clients may coalesce a
 * full-size packet with a few small ones (acknowledgements, PINGREQ) in one frame.
 */
const FRAME_SLACK_BYTES = 64 * 1024;
/** How often Node checks HTTP connections against headersTimeout/requestTimeout. */
const MAX_TIMEOUT_CHECK_MS = 1000;

/** The offered subprotocols of a handshake, in the client's order. */
function offeredSubprotocols(req: http.IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  return header
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/** Ours, preferring "mqtt" whatever the client's order; false when none is offered. */
function selectSubprotocol(offered: Iterable<string>): string | false {
  const set = new Set(offered);
  return SUBPROTOCOLS.find((p) => set.has(p)) ?? false;
}

/** Why an upgrade request is refused (HTTP status and a short reason), or null to accept. */
function refusalOf(req: http.IncomingMessage, path: string): { status: number; reason: string } | null {
  let pathname: string;
  try {
    pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return { status: 400, reason: 'malformed request target' };
  }
  if (pathname !== path) return { status: 404, reason: `MQTT is served at ${path}` };
  if (selectSubprotocol(offeredSubprotocols(req)) === false) {
    return { status: 400, reason: `offer the WebSocket subprotocol ${SUBPROTOCOLS.join(' or ')}` };
  }
  return null;
}

/** Answers a refused upgrade with a plain HTTP response and closes the socket. */
function refuse(socket: Duplex, status: number, reason: string): void {
  const body = `${reason}\n`;
  // After 'upgrade' Node's HTTP server no longer listens for socket errors: a reset while
  // we answer must not become an uncaught 'error' (a crash).
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

export const startWebSocketListener: StartListener = async (config, broker, logger, resolvePath, dirs, guard) => {
  const path = config.path ?? DEFAULT_WS_PATH;
  const tlsContext = config.protocol === 'wss' ? await TlsContextManager.create({ listener: config, resolvePath, ...dirs, logger, events: broker.events }) : null;
  const connectTimeoutMs = Math.ceil(broker.config.connectTimeout * 1000);
  const accepted = new AcceptedConnections(broker, config);
  const wss = new WebSocketServer({
    noServer: true,
    // No list of clients kept by ws: AcceptedConnections is the one list.
    clientTracking: false,
    // The framing layer must still see the maximum packet size first; this bounds what
    // ws buffers for one message before the Connection sees any of it.
    maxPayload: (config.maxPacketSize ?? broker.config.maxPacketSize) + FRAME_SLACK_BYTES,
    // SECURITY: no compression (memory per connection, and compression-ratio attacks).
    perMessageDeflate: false,
    handleProtocols: (protocols) => selectSubprotocol(protocols),
  });

  // SECURITY: an HTTP request that never upgrades must not hold a socket: the whole
  // request (headers included) has mqtt.connectTimeout, like a TLS handshake.
  const httpOptions: http.ServerOptions = {
    headersTimeout: connectTimeoutMs,
    requestTimeout: connectTimeoutMs,
    connectionsCheckingInterval: Math.min(MAX_TIMEOUT_CHECK_MS, connectTimeoutMs),
    noDelay: true,
  };
  let server: http.Server;
  if (tlsContext !== null) {
    const httpsServer = https.createServer({ ...httpOptions, ...tlsContext.serverOptions(), handshakeTimeout: connectTimeoutMs });
    // Admission (certificate checks with a logged reason), reload, tickets, stapling.
    tlsContext.attach(httpsServer);
    server = httpsServer;
  } else {
    server = http.createServer(httpOptions);
  }

  // headersTimeout covers a request that has begun; a socket that sends nothing at all is
  // covered by the idle timeout (ws clears it on the upgraded socket).
  server.setTimeout(connectTimeoutMs);

  server.on('request', (_req, res) => {
    // Plain HTTP (no upgrade) is not served here.
    res.writeHead(426, { Connection: 'close', Upgrade: 'websocket', 'Content-Type': 'text/plain' });
    res.end(`MQTT over WebSocket: upgrade at ${path}\n`);
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const tcp = socket as net.Socket;
    const refusal = refusalOf(req, path);
    if (refusal !== null) {
      logger.info({ listener: config.name, remote: tcp.remoteAddress, status: refusal.status, url: req.url?.slice(0, 200) }, 'WebSocket upgrade refused');
      refuse(socket, refusal.status, refusal.reason);
      return;
    }
    // Destroyed already: the TLS context manager refused the client certificate (and logged why).
    if (tcp.destroyed) return;
    if (broker.shuttingDown) {
      socket.destroy();
      return;
    }
    // SECURITY: the identity is the one proven by the TLS handshake of the socket under
    // this request, never anything the HTTP request says.
    const peer = peerInfoOf(tcp, tlsContext);
    wss.handleUpgrade(req, socket, head, (ws) => {
      accepted.adopt(new WebSocketByteStream(ws), peer);
    });
  });
  server.on('error', (err) => logger.error({ listener: config.name, err: err.message }, 'listener error'));

  // The HTTP(S) server never binds: the acceptor does, and hands it admitted sockets through
  // Node's documented 'connection' injection.
  const running = await startGuarded(config, broker, guard, logger, accepted, tlsContext, (socket) => server.emit('connection', socket), () => {
    // No new sockets; HTTP requests still waiting to upgrade are dropped. Upgraded
    // WebSockets are no longer the HTTP server's and stay until closeConnections.
    server.close();
    server.closeIdleConnections();
  });
  // SECURITY: http.Server starts its headersTimeout/requestTimeout checker on 'listening';
  // since it does not listen itself, it is told here, or a request that never completes
  // would hold its socket (and its connection slot) forever.
  server.emit('listening');
  return running;
};
