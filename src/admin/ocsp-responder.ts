/**
 * The OCSP responder's HTTP side (RFC 6960 appendix A): POST with an
 * `application/ocsp-request` body, or GET `/<url-encoded base64 of the DER request>`.
 * Owns: HTTP parsing, body limits, status codes and content types.
 * Must not: look up certificate status or sign (the `OcspAuthority` it is given does:
 * server/ builds one over the PKI inventory, so every answer is live).
 *
 * Per RFC 6960 §2.3 a malformed request is answered with HTTP 200 and an OCSP
 * `malformedRequest` response; HTTP errors are only for what is not OCSP at all
 * (404 other paths, 405 other methods, 413 oversized bodies).
 */
import http from 'node:http';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ocspErrorResponse } from '../pki/index.js';
import { listenHttp, readBodyCapped, type BoundHttpServer } from './http-listen.js';

/**
 * Signs OCSP answers. Throws a BastionError with code ERR_PKI_BAD_OCSP for a malformed
 * request, ERR_OCSP_UNAUTHORIZED when it cannot sign for the CA asked about.
 */
export interface OcspAuthority {
  respond(requestDer: Buffer): Promise<Buffer>;
}

export interface OcspResponderOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly authority: OcspAuthority;
  readonly logger: Logger;
}

/** The bound responder: its address and `close()`. */
export type RunningOcspResponder = BoundHttpServer;

/** Largest request body or GET path accepted; real OCSP requests are a few hundred bytes. */
export const MAX_OCSP_REQUEST_BYTES = 16 * 1024;
const RESPONSE_TYPE = 'application/ocsp-response';

function send(res: http.ServerResponse, status: number, body: Buffer, type = RESPONSE_TYPE): void {
  res.writeHead(status, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  send(res, status, Buffer.from(`${text}\n`), 'text/plain; charset=utf-8');
}

/** The DER request of a GET: the path after the last `/` that starts the base64 (it may hold `/`). */
function derFromGetPath(url: string): Buffer | undefined {
  const encoded = url.replace(/^\/+/, '').split('?')[0] ?? '';
  if (encoded.length === 0) return undefined;
  let b64: string;
  try {
    b64 = decodeURIComponent(encoded);
  } catch {
    return Buffer.alloc(0);
  }
  if (!/^[A-Za-z0-9+/=\s]+$/.test(b64)) return undefined;
  return Buffer.from(b64, 'base64');
}

export async function startOcspResponder(options: OcspResponderOptions): Promise<RunningOcspResponder> {
  const { authority, logger } = options;

  const answer = async (res: http.ServerResponse, der: Buffer): Promise<void> => {
    try {
      send(res, 200, await authority.respond(der));
    } catch (err) {
      const code = err instanceof BastionError ? err.code : undefined;
      if (code === 'ERR_PKI_BAD_OCSP') return send(res, 200, ocspErrorResponse('malformedRequest'));
      if (code === 'ERR_OCSP_UNAUTHORIZED') {
        logger.warn({ err: (err as Error).message }, 'OCSP request for a CA this responder cannot sign for');
        return send(res, 200, ocspErrorResponse('unauthorized'));
      }
      logger.error({ err: (err as Error).message }, 'OCSP responder failed to answer');
      send(res, 200, ocspErrorResponse('internalError'));
    }
  };

  const server = http.createServer((req, res) => {
    const handle = async (): Promise<void> => {
      const url = req.url ?? '/';
      if (req.method === 'POST') {
        if (url !== '/' && url.split('?')[0] !== '/') return sendText(res, 404, 'not found');
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'application/ocsp-request') {
          req.resume();
          return sendText(res, 415, 'expected content-type application/ocsp-request');
        }
        const body = await readBodyCapped(req, MAX_OCSP_REQUEST_BYTES);
        if (body === 'too-large') return sendText(res, 413, `OCSP request larger than ${MAX_OCSP_REQUEST_BYTES} bytes`);
        return answer(res, body);
      }
      if (req.method === 'GET') {
        if (url.length > MAX_OCSP_REQUEST_BYTES) return sendText(res, 414, 'request path too long');
        const der = derFromGetPath(url);
        if (der === undefined) return sendText(res, 404, 'not found');
        return answer(res, der);
      }
      res.setHeader('allow', 'GET, POST');
      return sendText(res, 405, 'method not allowed');
    };
    handle().catch((err: unknown) => {
      logger.error({ err: (err as Error).message }, 'OCSP request failed');
      if (!res.headersSent) sendText(res, 500, 'internal error');
      else res.destroy();
    });
  });
  const bound = await listenHttp(server, options.host, options.port);
  server.on('error', (err) => logger.error({ err: err.message }, 'OCSP responder error'));
  logger.info({ host: bound.host, port: bound.port }, 'OCSP responder listening');
  return bound;
}
