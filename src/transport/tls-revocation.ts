/**
 * Where a TLS endpoint's client-certificate revocations come from. Owns: choosing the
 * source (the configured `tls.crl`, or the built-in PKI's CRLs when the endpoint trusts
 * that PKI) and saying when there is none. Must not: load or apply CRLs (tls-material.ts
 * reads them, tls-context.ts applies and reloads them, server/revocation.ts kicks).
 *
 * SECURITY: revocation must not depend on remembering a config key. A listener whose
 * `tls.ca` holds the built-in PKI's root or intermediate enforces that PKI's `crl.pem`,
 * which `bastion cert revoke` re-signs at once, so a revoked device is cut and refused
 * without `tls.crl`. Opting out is written down: `tls.revocation: none`. A listener that
 * takes client certificates from a foreign CA with no CRL gets a warning at start.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TlsConfig } from '../core/tls-config.js';

/** The built-in PKI's files this module reads (see server/pki-layout.ts for the whole layout). */
const BUILT_IN_ANCHORS = ['root.crt', 'intermediate.crt'];
const BUILT_IN_CRL = 'crl.pem';

export type RevocationSource =
  | { kind: 'crl'; path: string; builtIn: boolean }
  | { kind: 'none'; why: 'opted-out' | 'no-client-certificates' | 'no-source' };

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

async function fingerprintsIn(path: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return new Set();
  }
  const prints = new Set<string>();
  for (const pem of text.match(PEM_CERTIFICATE) ?? []) {
    try {
      prints.add(new X509Certificate(pem).fingerprint256);
    } catch {
      // Not a certificate we can read: it cannot be the built-in PKI's either.
    }
  }
  return prints;
}

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The revocation source of an endpoint with these TLS settings. `caPath` and `crlPath`
 * are already resolved; `builtInPkiDir` is the data directory's PKI (`<dataDir>/pki` or
 * `pki.dir`).
 */
export async function revocationSourceOf(tls: Pick<TlsConfig, 'clientCerts' | 'revocation'>, caPath: string | undefined, crlPath: string | undefined, builtInPkiDir: string): Promise<RevocationSource> {
  if (tls.clientCerts === 'none') return { kind: 'none', why: 'no-client-certificates' };
  if (crlPath !== undefined) return { kind: 'crl', path: crlPath, builtIn: false };
  if (tls.revocation === 'none') return { kind: 'none', why: 'opted-out' };
  if (caPath === undefined) return { kind: 'none', why: 'no-source' };
  const trusted = await fingerprintsIn(caPath);
  for (const anchor of BUILT_IN_ANCHORS) {
    for (const print of await fingerprintsIn(join(builtInPkiDir, anchor))) {
      const crl = join(builtInPkiDir, BUILT_IN_CRL);
      if (trusted.has(print) && (await exists(crl))) return { kind: 'crl', path: crl, builtIn: true };
    }
  }
  return { kind: 'none', why: 'no-source' };
}
