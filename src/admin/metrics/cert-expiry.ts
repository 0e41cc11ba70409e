/**
 * Time until the listeners' certificates expire: the server certificate (the first one in
 * its PEM file) and the CA bundle (the earliest-expiring certificate in it). Owns: reading
 * and parsing those files, re-read only when a file changed (TLS reload swaps them in
 * place). Must not: fail a scrape over an unreadable file (that series is left out and the
 * problem logged once per change).
 */
import { X509Certificate } from 'node:crypto';
import { stat, readFile } from 'node:fs/promises';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../core/logger.js';

export interface CertificateFile {
  listener: string;
  cert: 'server' | 'ca';
  path: string;
}

interface Cached {
  version: string;
  /** ms since epoch; null: the file holds no certificate we could read. */
  notAfter: number | null;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** notAfter of every certificate in a PEM text, in file order. */
export function pemNotAfter(pem: string): number[] {
  const out: number[] = [];
  for (const block of pem.match(PEM_CERT) ?? []) {
    const t = Date.parse(new X509Certificate(block).validTo);
    if (Number.isFinite(t)) out.push(t);
  }
  return out;
}

export class CertificateExpiry {
  private readonly gauge: Gauge<'listener' | 'cert'>;
  private readonly cache = new Map<string, Cached>();

  constructor(
    registry: Registry,
    private readonly files: readonly CertificateFile[],
    private readonly logger: Logger,
  ) {
    this.gauge = new Gauge({
      // Seconds, the Prometheus base unit (promtool refuses days): days left = value / 86400.
      name: 'bastion_certificate_expiry_seconds',
      help: 'Seconds until a certificate expires (negative: expired; divide by 86400 for days), by listener and cert (server: its own certificate; ca: the earliest-expiring CA it trusts).',
      labelNames: ['listener', 'cert'],
      registers: [registry],
    });
  }

  async refresh(now: number): Promise<void> {
    const values: Array<[CertificateFile, number]> = [];
    for (const f of this.files) {
      const notAfter = await this.notAfter(f);
      if (notAfter !== null) values.push([f, Math.round((notAfter - now) / 1000)]);
    }
    // Reset and fill in one synchronous step: a scrape running meanwhile never sees it empty.
    this.gauge.reset();
    for (const [f, seconds] of values) this.gauge.set({ listener: f.listener, cert: f.cert }, seconds);
  }

  private async notAfter(f: CertificateFile): Promise<number | null> {
    const key = `${f.cert}\u0000${f.path}`;
    let version: string;
    try {
      const st = await stat(f.path);
      version = `${st.mtimeMs}:${st.size}`;
    } catch (err) {
      return this.remember(key, `missing:${(err as NodeJS.ErrnoException).code ?? ''}`, null, f, err);
    }
    const cached = this.cache.get(key);
    if (cached !== undefined && cached.version === version) return cached.notAfter;
    try {
      const all = pemNotAfter(await readFile(f.path, 'utf8'));
      // The server's own certificate comes first in its file; of a CA bundle, the first to expire matters.
      const notAfter = all.length === 0 ? null : f.cert === 'server' ? all[0]! : Math.min(...all);
      return this.remember(key, version, notAfter, f, notAfter === null ? new Error('no certificate in the file') : null);
    } catch (err) {
      return this.remember(key, version, null, f, err);
    }
  }

  private remember(key: string, version: string, notAfter: number | null, f: CertificateFile, err: unknown): number | null {
    const before = this.cache.get(key);
    if (err !== null && before?.version !== version) {
      this.logger.warn({ listener: f.listener, cert: f.cert, path: f.path, err: err instanceof Error ? err.message : String(err) }, 'metrics: cannot read the certificate for its expiry');
    }
    this.cache.set(key, { version, notAfter });
    return notAfter;
  }
}
