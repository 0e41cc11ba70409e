/**
 * The TLS part of a listener's configuration: versions, suites, curves, CRL, session
 * tickets, OCSP stapling, TLS-PSK and how a certificate becomes an identity. Owns: what a
 * valid TLS setting is and its secure default. Must not: read files (transport/ does).
 *
 * SECURITY: TLS 1.2 and 1.3 only; a cipher list may name only AEAD suites, and (outside
 * TLS-PSK) only suites with forward secrecy. Anything else is a config error, not a warning.
 */
import { z } from 'zod';

/** TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only. The default list. */
export const STRONG_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const;

/** TLS 1.3 suites: all AEAD, all with forward secrecy by construction. */
export const TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const;

/**
 * TLS 1.2 PSK suites, AEAD only, the ECDHE one first. SECURITY: the plain-PSK suites have
 * no forward secrecy; they are offered because constrained devices often lack ECDHE-PSK,
 * and only on a listener that configures `psk`.
 */
export const PSK_TLS12_CIPHERS = ['ECDHE-PSK-CHACHA20-POLY1305', 'PSK-AES128-GCM-SHA256', 'PSK-AES256-GCM-SHA384', 'PSK-CHACHA20-POLY1305'] as const;

const ALLOWED_CIPHERS: ReadonlySet<string> = new Set<string>([...STRONG_TLS12_CIPHERS, ...TLS13_CIPHERS, ...PSK_TLS12_CIPHERS]);

/** Key-exchange groups OpenSSL 3.0 offers that we accept (all with ≥ 128-bit strength). */
const ALLOWED_CURVES: ReadonlySet<string> = new Set(['X25519', 'X448', 'P-256', 'P-384', 'P-521', 'prime256v1', 'secp384r1', 'secp521r1']);

const DEFAULT_TLS_CURVES = 'X25519:P-256:P-384';

/** The parts of a colon-separated OpenSSL list (`a:b:c`), empty parts dropped. */
function splitOpensslList(list: string): string[] {
  return list
    .split(':')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const cipherList = z.string().superRefine((value, ctx) => {
  const parts = splitOpensslList(value);
  if (parts.length === 0) ctx.addIssue({ code: 'custom', message: 'names no cipher suite' });
  const bad = parts.filter((p) => !ALLOWED_CIPHERS.has(p));
  if (bad.length > 0) {
    // SECURITY: an allow-list, so CBC, RSA key exchange, NULL, EXPORT, RC4, 3DES and
    // OpenSSL keywords such as ALL or HIGH (which expand to some of those) are all refused.
    ctx.addIssue({
      code: 'custom',
      message: `${bad.join(', ')} ${bad.length === 1 ? 'is not' : 'are not'} an allowed suite (AEAD with forward secrecy only: ${[...STRONG_TLS12_CIPHERS, ...TLS13_CIPHERS].join(', ')}; with psk also ${PSK_TLS12_CIPHERS.join(', ')})`,
    });
  }
});

const curveList = z.string().superRefine((value, ctx) => {
  const parts = splitOpensslList(value);
  if (parts.length === 0) ctx.addIssue({ code: 'custom', message: 'names no curve' });
  const bad = parts.filter((p) => !ALLOWED_CURVES.has(p));
  if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `unknown or weak curve ${bad.join(', ')} (allowed: ${[...ALLOWED_CURVES].join(', ')})` });
});

const sessionTicketsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Hours between ticket key rotations. */
    rotateHours: z.number().positive().max(24 * 7).default(12),
    /** Shared key file (several broker processes accept each other's tickets); default `<dataDir>/tls-ticket-keys`. */
    keyFile: z.string().min(1).optional(),
  })
  .strict();

export const tlsSchema = z
  .object({
    cert: z.string().min(1),
    key: z.string().min(1),
    ca: z.string().min(1).optional(),
    /** PEM file with one or more CRLs (label `X509 CRL`); client certificates are checked against it. */
    crl: z.string().min(1).optional(),
    clientCerts: z.enum(['required', 'optional', 'none']).default('required'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    ciphers: cipherList.optional(),
    /** Key-exchange groups in preference order (Node's ecdhCurve). */
    curves: curveList.default(DEFAULT_TLS_CURVES),
    sessionTickets: sessionTicketsSchema.default({ enabled: true, rotateHours: 12 }),
    /** Staple an OCSP response for the server certificate (fetched from its AIA OCSP URL). */
    ocspStapling: z.boolean().default(false),
  })
  .strict();

/** TLS-PSK: a YAML file mapping PSK identities to hex keys (`identity: hexkey`). */
export const pskSchema = z.object({ file: z.string().min(1) }).strict();

/** Which part of a verified client certificate is the client's identity. */
export const identityMappingSchema = z.enum(['cn', 'san-uri', 'san-dns', 'subject']);

export type TlsConfig = z.infer<typeof tlsSchema>;
export type IdentityMapping = z.infer<typeof identityMappingSchema>;
