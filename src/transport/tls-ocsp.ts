/**
 * OCSP stapling for a listener's own certificate. Owns: fetching an OCSP response from the
 * responder named in the certificate's AIA extension (HTTP POST), caching it until half-way
 * to its nextUpdate, refreshing it in the background, and handing it to handshakes.
 * Must not: block or fail a handshake (no usable response → staple nothing).
 *
 * The response is not signature-checked here: the client that asked for it verifies it
 * against its own trust anchors; we only make sure it is about our certificate and current.
 */
import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../core/logger.js';
import { buildOcspRequest, normalizeSerial, parseOcspResponse } from '../pki/index.js';

const FETCH_TIMEOUT_MS = 5000;
const MAX_RESPONSE_BYTES = 64 * 1024;
/** After a failed fetch: try again this soon (the cached response, if any, stays in use). */
const RETRY_MS = 60_000;
/** A response without nextUpdate is refreshed this often. */
const DEFAULT_REFRESH_MS = 3_600_000;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The OCSP responder URL from a certificate's authorityInfoAccess, if any. */
function ocspUrlOf(certPem: string): string | undefined {
  const info = new X509Certificate(certPem).infoAccess ?? '';
  const m = /^OCSP - URI:(\S+)$/m.exec(info);
  return m?.[1];
}

interface Cached {
  der: Buffer;
  /** ms since epoch after which the response must not be stapled. */
  expiresAt: number;
}

function postOcsp(url: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : null;
    if (client === null) {
      reject(new Error(`unsupported OCSP URL scheme ${target.protocol}`));
      return;
    }
    const req = client.request(target, { method: 'POST', headers: { 'content-type': 'application/ocsp-request', 'content-length': body.length }, timeout: FETCH_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('OCSP response too large'));
        else chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`OCSP responder answered HTTP ${res.statusCode}`));
        else resolve(Buffer.concat(chunks));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('OCSP responder timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

export class OcspStapler {
  private cached: Cached | null = null;
  private timer: NodeJS.Timeout | undefined;
  private warned = false;
  private generation = 0;

  constructor(
    private readonly listener: string,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A new server certificate (chain) or CA: drop the old response and fetch one for the
   * leaf. Its issuer is the next certificate of the chain, else the first of `caPem`.
   */
  update(chainPem: string, caPem: string | undefined): void {
    this.generation++;
    this.cached = null;
    this.warned = false;
    clearTimeout(this.timer);
    const [leaf, chainIssuer] = chainPem.match(PEM_CERT) ?? [];
    const issuer = chainIssuer ?? caPem?.match(PEM_CERT)?.[0];
    const url = leaf !== undefined ? ocspUrlOf(leaf) : undefined;
    if (leaf === undefined || issuer === undefined || url === undefined) {
      this.logger.warn({ listener: this.listener, reason: url === undefined ? 'the certificate names no OCSP responder' : 'no issuer certificate (chain or tls.ca)' }, 'OCSP stapling off');
      return;
    }
    void this.refresh(this.generation, leaf, issuer, url);
  }

  /** The response to staple now, or null (logged once per certificate at warn). */
  current(): Buffer | null {
    const c = this.cached;
    if (c !== null && this.now() < c.expiresAt) return c.der;
    if (!this.warned) {
      this.warned = true;
      this.logger.warn({ listener: this.listener }, 'no current OCSP response; stapling nothing');
    }
    return null;
  }

  close(): void {
    this.generation++;
    clearTimeout(this.timer);
  }

  private schedule(generation: number, delayMs: number, leaf: string, issuer: string, url: string): void {
    if (generation !== this.generation) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(generation, leaf, issuer, url), Math.min(Math.max(delayMs, 1000), 2 ** 31 - 1));
    this.timer.unref();
  }

  private async refresh(generation: number, leaf: string, issuer: string, url: string): Promise<void> {
    const serial = normalizeSerial(new X509Certificate(leaf).serialNumber);
    try {
      const der = await postOcsp(url, buildOcspRequest({ certPem: leaf, issuerPem: issuer }));
      if (generation !== this.generation) return;
      const info = parseOcspResponse(der);
      if (info.responseStatus !== 'successful') throw new Error(`OCSP responder said ${info.responseStatus}`);
      const single = info.responses.find((r) => normalizeSerial(r.serialNumber) === serial);
      if (single === undefined) throw new Error('the OCSP response is not about our certificate');
      const now = this.now();
      const nextUpdate = single.nextUpdate?.getTime();
      if (nextUpdate !== undefined && nextUpdate <= now) throw new Error('the OCSP response is already stale');
      if (single.status !== 'good') this.logger.error({ listener: this.listener, serialNumber: serial, status: single.status }, 'OCSP says our own server certificate is not good');
      this.cached = { der, expiresAt: nextUpdate ?? now + DEFAULT_REFRESH_MS };
      this.warned = false;
      this.logger.info({ listener: this.listener, status: single.status, nextUpdate: single.nextUpdate?.toISOString() }, 'OCSP response fetched for stapling');
      // Half-way to nextUpdate: early enough that a slow or failing responder has time.
      const refreshIn = nextUpdate !== undefined ? (nextUpdate - now) / 2 : DEFAULT_REFRESH_MS;
      this.schedule(generation, refreshIn, leaf, issuer, url);
    } catch (err) {
      if (generation !== this.generation) return;
      this.logger.warn({ listener: this.listener, url, err: (err as Error).message }, 'OCSP fetch failed; retrying');
      this.schedule(generation, RETRY_MS, leaf, issuer, url);
    }
  }
}
