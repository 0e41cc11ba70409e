/**
 * The TLS part of a listener's configuration: versions, suites, curves, CRL, session
 * tickets, OCSP stapling, TLS-PSK and how a certificate becomes an identity. Owns: what a
 * valid TLS setting is and its secure default. Must not: read files (transport/ does).
 *
 * SECURITY: TLS 1.2 and 1.3 only; a cipher list may name only AEAD suites, and (outside
 * TLS-PSK) only suites with forward secrecy. Anything else is a config error, not a warning.
 * TLS 1.3 key exchange prefers the hybrid post-quantum group X25519MLKEM768 (ML-KEM-768 +
 * X25519, OpenSSL 3.5), so traffic recorded today cannot be decrypted later by a quantum
 * computer; classic clients still get X25519 or a NIST curve.
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

/**
 * Hybrid post-quantum key-exchange groups (TLS 1.3 only): ML-KEM combined with a classic
 * curve, so the exchange holds while either half does. OpenSSL 3.5 names.
 */
export const HYBRID_GROUPS = ['X25519MLKEM768', 'SecP256r1MLKEM768', 'SecP384r1MLKEM1024'] as const;

/** Classic groups we accept (all with ≥ 128-bit strength), in OpenSSL's and Node's spellings. */
export const CLASSIC_GROUPS = ['X25519', 'X448', 'P-256', 'P-384', 'P-521', 'prime256v1', 'secp384r1', 'secp521r1'] as const;

const ALLOWED_GROUPS: ReadonlySet<string> = new Set<string>([...HYBRID_GROUPS, ...CLASSIC_GROUPS]);
const HYBRID_GROUP_SET: ReadonlySet<string> = new Set<string>(HYBRID_GROUPS);

/**
 * Preference order of every Bastion TLS endpoint, server and client: the hybrid group
 * first, then the classic ones. OpenSSL's server picks, among these, a group the client
 * already sent a key share for, so a classic client (OpenSSL 3.0, TLS 1.2) costs no extra
 * round trip and a hybrid-capable one (OpenSSL 3.5 defaults, Node 24+) gets the hybrid.
 */
export const DEFAULT_TLS_GROUPS = 'X25519MLKEM768:X25519:P-256:P-384';

/**
 * What Bastion's own TLS clients offer (CLI pub/sub, the admin CLI, the syslog exporter):
 * the same order, with key shares (`*`, OpenSSL 3.5 syntax) for the hybrid group and for
 * X25519, so a classic server picks X25519 without a HelloRetryRequest round trip.
 */
export const CLIENT_TLS_GROUPS = '*X25519MLKEM768:*X25519:P-256:P-384';

/** True for a hybrid post-quantum group name (as configured, or as negotiated). */
export function isHybridGroup(name: string): boolean {
  return HYBRID_GROUP_SET.has(name);
}

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

/** A colon-separated allow-listed group list (`tls.groups`, and the old `tls.curves`). */
export const groupList = z.string().superRefine((value, ctx) => {
  const parts = splitOpensslList(value);
  if (parts.length === 0) ctx.addIssue({ code: 'custom', message: 'names no key-exchange group' });
  const bad = parts.filter((p) => !ALLOWED_GROUPS.has(p));
  if (bad.length > 0) {
    ctx.addIssue({ code: 'custom', message: `unknown or weak key-exchange group ${bad.join(', ')} (allowed: ${[...ALLOWED_GROUPS].join(', ')})` });
  }
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
    /**
     * SECURITY: `auto` (default): `crl` when given, else the built-in PKI's CRLs when `ca`
     * holds that PKI's root or intermediate, else a warning at start. `none`: no revocation
     * checks, said in writing.
     */
    revocation: z.enum(['auto', 'none']).default('auto'),
    clientCerts: z.enum(['required', 'optional', 'none']).default('required'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    ciphers: cipherList.optional(),
    /** Key-exchange groups in preference order (Node's ecdhCurve); default DEFAULT_TLS_GROUPS. */
    groups: groupList.optional(),
    /** Deprecated spelling of `groups` (before hybrid groups existed); logged at warn. Not both. */
    curves: groupList.optional(),
    /**
     * SECURITY: refuse every handshake that does not negotiate a hybrid post-quantum group
     * (only the hybrid groups of `groups` are offered). Needs minVersion TLSv1.3.
     */
    requirePostQuantum: z.boolean().default(false),
    sessionTickets: sessionTicketsSchema.default({ enabled: true, rotateHours: 12 }),
    /** Staple an OCSP response for the server certificate (fetched from its AIA OCSP URL). */
    ocspStapling: z.boolean().default(false),
  })
  .strict()
  .superRefine((t, ctx) => {
    for (const issue of tlsSettingIssues(t)) ctx.addIssue({ code: 'custom', ...issue });
  });

/** Settings shared by every TLS endpoint (listeners, admin API) that the checks below read. */
interface GroupSettings {
  crl?: string | undefined;
  revocation?: 'auto' | 'none' | undefined;
  groups?: string | undefined;
  curves?: string | undefined;
  requirePostQuantum?: boolean | undefined;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** The config problems of a TLS section's revocation and group settings, with the key each one names. */
export function tlsSettingIssues(t: GroupSettings): Array<{ path: string[]; message: string }> {
  const issues: Array<{ path: string[]; message: string }> = [];
  if (t.revocation === 'none' && t.crl !== undefined) {
    issues.push({ path: ['revocation'], message: 'revocation: none contradicts crl: give one or the other' });
  }
  if (t.groups !== undefined && t.curves !== undefined) {
    issues.push({ path: ['curves'], message: 'curves is the old name of groups: give only groups' });
  }
  if (t.requirePostQuantum === true) {
    // SECURITY: TLS 1.2 has no post-quantum key exchange; allowing it would make the promise false.
    if (t.minVersion !== 'TLSv1.3') issues.push({ path: ['requirePostQuantum'], message: 'requirePostQuantum needs minVersion: TLSv1.3 (TLS 1.2 has no post-quantum key exchange)' });
    const configured = t.groups ?? t.curves;
    if (configured !== undefined && !splitOpensslList(configured).some(isHybridGroup)) {
      issues.push({ path: [t.groups !== undefined ? 'groups' : 'curves'], message: `requirePostQuantum needs a hybrid group in the list (${HYBRID_GROUPS.join(', ')})` });
    }
  }
  return issues;
}

/** Config spellings that OpenSSL also accepts, mapped to the one name a connection reports. */
const GROUP_ALIASES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** The name a configured group is reported under (`prime256v1` → `P-256`), as negotiated groups are. */
export function canonicalGroupName(name: string): string {
  return GROUP_ALIASES[name] ?? name;
}

/** The groups an endpoint offers, in order, by the names connections report them under. */
export function offeredGroups(t: GroupSettings): string[] {
  return splitOpensslList(effectiveGroups(t)).map(canonicalGroupName);
}

/**
 * The group list an endpoint offers (Node's `ecdhCurve`): the configured one or the
 * default; with requirePostQuantum only its hybrid groups, so OpenSSL itself refuses a
 * client that cannot do one ("no suitable key share").
 */
export function effectiveGroups(t: GroupSettings): string {
  const list = t.groups ?? t.curves ?? DEFAULT_TLS_GROUPS;
  if (t.requirePostQuantum !== true) return list;
  return splitOpensslList(list).filter(isHybridGroup).join(':');
}

/** TLS-PSK: a YAML file mapping PSK identities to hex keys (`identity: hexkey`). */
export const pskSchema = z.object({ file: z.string().min(1) }).strict();

/** Which part of a verified client certificate is the client's identity. */
export const identityMappingSchema = z.enum(['cn', 'san-uri', 'san-dns', 'subject']);

export type TlsConfig = z.infer<typeof tlsSchema>;
export type IdentityMapping = z.infer<typeof identityMappingSchema>;
