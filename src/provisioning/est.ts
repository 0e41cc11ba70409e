/**
 * EST (RFC 7030 subset, docs/PROVISIONING.md §4) for devices, on the admin HTTPS listener:
 * `GET /.well-known/est/cacerts`, `POST …/simpleenroll` (a claim certificate or a one-time
 * token, a template and its parameters) and `POST …/simplereenroll` (the device's current
 * certificate). Owns: the HTTP side of these three (paths, methods, content types, the
 * base64 bodies, who the caller is, status codes and one-line reasons). Must not: decide
 * anything about provisioning (provisioning-service.ts does, with the same checks as over
 * MQTT), verify a certificate (the TLS layer did; `peer` says what it verified), or know
 * the operator API (admin/ hands it the paths under EST_PREFIX and nothing else).
 *
 * SECURITY: devices are not operators: these paths never take operator credentials, and
 * nothing here opens an operator route (the admin server routes those after its own
 * authentication). A presented certificate that TLS did not verify is refused (401), never
 * read. The token is checked by the `provision-token` provider (by its hash) and spent only
 * by a successful enrollment. Bodies are capped (413) before they are parsed; every failure
 * is a status and a one-line text/plain reason, never a crash.
 */
import { readBodyCapped } from '../admin/http-listen.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PeerCertificate } from '../broker/channel/connection-port.js';
import type { AuthorizedClient, ClientIdentity } from '../broker/ports.js';
import type { Logger } from '../core/logger.js';
import { NOT_MINE, type AuthProvider, type ProviderVerdict } from '../security/authn/provider.js';
import { base64CsrToPem, certsOnly, pemCertificatesToDer } from './pkcs7.js';
import { ProvisioningRefusal, type ProvisioningService } from './provisioning-service.js';
import { PROVISION_USERNAME } from './token-provider.js';

/** Every EST path starts with this. */
export const EST_PREFIX = '/.well-known/est/';
/** Largest request body (a CSR is a few KiB). */
export const EST_MAX_BODY_BYTES = 64 * 1024;
/** At most this many query parameters (the template and its parameters). */
const MAX_QUERY_PARAMETERS = 32;

const CERTS_ONLY = 'application/pkcs7-mime; smime-type=certs-only';
const UNAUTHENTICATED = { 'www-authenticate': 'Basic realm="bastion-est", charset="UTF-8"' };

/** What the TLS layer knows of the caller. */
export interface EstPeer {
  remoteAddress: string;
  /** The client certificate, only when TLS verified it (chain and revocation); null otherwise. */
  certificate: PeerCertificate | null;
  /** A certificate was presented that TLS did not verify (refused with 401). */
  unverifiedCertificate: boolean;
}

export interface EstOptions {
  /** The provisioning service; null: provisioning is off, every EST path answers 404. */
  service: () => ProvisioningService | null;
  /** The `provision-token` provider (HTTP Basic `$provision:<token>`); null: tokens are refused. */
  tokens: AuthProvider | null;
  /** The issuing CA chain (PEM, issuing CA first) that /cacerts answers with. */
  caChainPem: () => Promise<string>;
  logger: Logger;
  /** The listener name clients are recorded under; default `admin`. */
  listener?: string;
  maxBodyBytes?: number;
}

/** Answers a request under EST_PREFIX (true) or leaves it alone (false). */
export type EstHandler = (req: IncomingMessage, res: ServerResponse, peer: EstPeer) => Promise<boolean>;

/** An expected failure: its status, one line of reason and headers. */
class EstError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 500);
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    // SECURITY: a certificate answer is the device's own, never cached on the way.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  send(res, status, 'text/plain; charset=utf-8', `${oneLine(text)}\n`, headers);
}

/** Base64 in 64-character lines, as RFC 2045 allows and `base64 -d` reads. */
function base64Lines(der: Buffer): string {
  return `${(der.toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n`;
}

function sendCertsOnly(res: ServerResponse, contentType: string, pem: string): void {
  const der = certsOnly(pemCertificatesToDer(pem));
  send(res, 200, contentType, base64Lines(der), { 'content-transfer-encoding': 'base64' });
}

/** The body, at most `limit` bytes: 413 beyond (nothing past the limit is kept). */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const body = await readBodyCapped(req, limit);
  if (body === 'too-large') throw new EstError(413, `request body larger than ${limit} bytes`, { connection: 'close' });
  return body;
}

/** 415 unless the request declares `application/pkcs10` in base64 (the only transfer encoding EST has). */
function requirePkcs10(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/pkcs10') throw new EstError(415, 'expected Content-Type application/pkcs10 (a base64 DER CSR)');
  const cte = req.headers['content-transfer-encoding'];
  if (cte !== undefined && String(cte).trim().toLowerCase() !== 'base64') throw new EstError(415, 'only base64 bodies are accepted (Content-Transfer-Encoding: base64)');
}

/** The CSR of the body as PEM, or 400. */
async function csrOf(req: IncomingMessage, limit: number): Promise<string> {
  const body = await readBody(req, limit);
  const pem = base64CsrToPem(body.toString('latin1'));
  if (pem === null) throw new EstError(400, 'InvalidCsr: the body is not a base64 DER certificate request');
  return pem;
}

/** `?template=T&name=value…`: the template and its parameters (each given once), or 400. */
function enrollQuery(query: URLSearchParams): { template: string; parameters: Record<string, string> } {
  const names = [...query.keys()];
  if (names.length > MAX_QUERY_PARAMETERS) throw new EstError(400, `InvalidParameters: at most ${MAX_QUERY_PARAMETERS} query parameters`);
  const parameters: Record<string, string> = Object.create(null) as Record<string, string>;
  let template: string | undefined;
  for (const name of new Set(names)) {
    const values = query.getAll(name);
    if (values.length !== 1) throw new EstError(400, `InvalidParameters: "${name.slice(0, 64)}" is given more than once`);
    if (name === 'template') template = values[0];
    else parameters[name] = values[0]!;
  }
  if (template === undefined || template.length === 0) throw new EstError(400, 'InvalidParameters: ?template=<name> is required');
  return { template, parameters: { ...parameters } };
}

/** `Authorization: Basic …` as user and password, or 401. */
function basicCredentials(header: string): { user: string; password: string } {
  const m = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header);
  if (m === null) throw new EstError(401, `EST takes HTTP Basic ${PROVISION_USERNAME}:<token> or a client certificate`, UNAUTHENTICATED);
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new EstError(401, 'malformed HTTP Basic credentials', UNAUTHENTICATED);
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function createEstHandler(opts: EstOptions): EstHandler {
  const listener = opts.listener ?? 'admin';
  const limit = opts.maxBodyBytes ?? EST_MAX_BODY_BYTES;

  /** The caller as the service knows a client: a claim or device certificate, or a one-time token. */
  const clientOf = async (req: IncomingMessage, peer: EstPeer, allowToken: boolean): Promise<AuthorizedClient> => {
    // SECURITY: a certificate TLS did not verify is not an identity, and not ignored either.
    if (peer.unverifiedCertificate) throw new EstError(401, 'client certificate not trusted', UNAUTHENTICATED);
    const clientId = `est:${peer.remoteAddress}`;
    const base = { remoteAddress: peer.remoteAddress, listener, ...(peer.certificate !== null ? { certificate: peer.certificate } : {}) };
    const authorization = req.headers.authorization;
    if (authorization !== undefined && allowToken) {
      const { user, password } = basicCredentials(authorization);
      if (user !== PROVISION_USERNAME) throw new EstError(401, `the HTTP Basic user must be ${PROVISION_USERNAME}`, UNAUTHENTICATED);
      const identity: ClientIdentity = { principal: null, method: 'anonymous', ...base };
      let verdict: ProviderVerdict = NOT_MINE;
      try {
        if (opts.tokens !== null) verdict = await opts.tokens.authenticate({ clientId, username: user, password: Buffer.from(password, 'utf8'), identity, allowAnonymous: false });
      } catch (err) {
        opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'EST: the provisioning token check failed');
      }
      if (verdict.kind !== 'allow') throw new EstError(401, 'bad provisioning token', UNAUTHENTICATED);
      return { clientId, principal: verdict.principal, identity: { ...identity, principal: verdict.principal, method: verdict.method, ...(verdict.username !== undefined ? { username: verdict.username } : {}) } };
    }
    if (authorization !== undefined) throw new EstError(401, 'renewal takes the device\'s current certificate, not an Authorization header', UNAUTHENTICATED);
    if (peer.certificate === null) {
      throw new EstError(401, allowToken ? `authentication required: a claim certificate or HTTP Basic ${PROVISION_USERNAME}:<token>` : 'authentication required: the device\'s current certificate', UNAUTHENTICATED);
    }
    const principal = peer.certificate.commonName;
    return { clientId, principal, identity: { principal, method: 'certificate', ...base } };
  };

  const enroll = async (req: IncomingMessage, res: ServerResponse, peer: EstPeer, service: ProvisioningService, query: URLSearchParams): Promise<void> => {
    const client = await clientOf(req, peer, true);
    requirePkcs10(req);
    const { template, parameters } = enrollQuery(query);
    const csrPem = await csrOf(req, limit);
    const device = await service.enroll(client, template, csrPem, parameters);
    sendCertsOnly(res, CERTS_ONLY, device.certificatePem);
  };

  const reenroll = async (req: IncomingMessage, res: ServerResponse, peer: EstPeer, service: ProvisioningService): Promise<void> => {
    const client = await clientOf(req, peer, false);
    requirePkcs10(req);
    const csrPem = await csrOf(req, limit);
    const renewed = await service.renew(client, csrPem);
    sendCertsOnly(res, CERTS_ONLY, renewed.certificatePem);
  };

  const route = async (req: IncomingMessage, res: ServerResponse, peer: EstPeer, url: URL): Promise<void> => {
    const service = opts.service();
    if (service === null) throw new EstError(404, 'EST is off: this broker has no provisioning templates');
    const op = url.pathname.slice(EST_PREFIX.length);
    const method = req.method ?? 'GET';
    switch (op) {
      case 'cacerts':
        if (method !== 'GET' && method !== 'HEAD') throw new EstError(405, `method ${method} not allowed on cacerts`, { allow: 'GET, HEAD' });
        return sendCertsOnly(res, 'application/pkcs7-mime', await opts.caChainPem());
      case 'simpleenroll':
        if (method !== 'POST') throw new EstError(405, `method ${method} not allowed on simpleenroll`, { allow: 'POST' });
        return enroll(req, res, peer, service, url.searchParams);
      case 'simplereenroll':
        if (method !== 'POST') throw new EstError(405, `method ${method} not allowed on simplereenroll`, { allow: 'POST' });
        return reenroll(req, res, peer, service);
      default:
        throw new EstError(404, `no such EST operation: ${op.slice(0, 64)} (cacerts, simpleenroll and simplereenroll are served)`);
    }
  };

  return async (req, res, peer) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'https://est.invalid');
    } catch {
      return false;
    }
    if (!url.pathname.startsWith(EST_PREFIX)) return false;
    try {
      await route(req, res, peer, url);
    } catch (err) {
      // A body that was not read may be large: close rather than drain it.
      const close: Record<string, string> = req.complete ? {} : { connection: 'close' };
      if (res.headersSent) {
        opts.logger.error({ err: err instanceof Error ? err.message : String(err), path: url.pathname }, 'EST answer failed midway');
        res.destroy();
      } else if (err instanceof EstError) {
        if (err.status === 401) opts.logger.info({ remote: peer.remoteAddress, path: url.pathname, reason: err.message }, 'EST request not authenticated');
        sendText(res, err.status, err.message, { ...close, ...err.headers });
      } else if (err instanceof ProvisioningRefusal) {
        sendText(res, err.statusCode, `${err.errorCode}: ${err.message}`, close);
      } else {
        opts.logger.error({ err: err instanceof Error ? err.message : String(err), path: url.pathname }, 'EST request failed');
        sendText(res, 500, 'InternalError: the request failed (see the broker log)', close);
      }
    }
    return true;
  };
}
