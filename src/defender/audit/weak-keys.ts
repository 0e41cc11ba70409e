/**
 * Weak-key tests on one certificate: RSA below 2048 bits, SHA-1/MD5/MD2 signatures, the
 * ROCA fingerprint (CVE-2017-15361) and the Debian OpenSSL weak-key list (CVE-2008-0166).
 * Owns: those tests. Must not: read files (the blacklist arrives as data in AuditInput).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';

/** Signature algorithm OIDs whose hash is broken for signatures (collisions are practical). */
const WEAK_SIGNATURES: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.2': 'MD2 with RSA',
  '1.2.840.113549.1.1.4': 'MD5 with RSA',
  '1.2.840.113549.1.1.5': 'SHA-1 with RSA',
  '1.3.14.3.2.29': 'SHA-1 with RSA',
  '1.2.840.10045.4.1': 'ECDSA with SHA-1',
  '1.2.840.10040.4.3': 'DSA with SHA-1',
};

export interface KeyFacts {
  /** 'rsa', 'ec', 'ed25519', … as Node names it. */
  readonly keyType: string;
  /** RSA modulus size in bits; undefined for other keys. */
  readonly rsaBits?: number;
  /** RSA modulus; undefined for other keys. */
  readonly modulus?: bigint;
  /** The weak signature algorithm's name, or null when the signature hash is fine. */
  readonly weakSignature: string | null;
}

/** What the weak-key checks need of a certificate; null when the PEM cannot be parsed. */
export function keyFacts(certPem: string): KeyFacts | null {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return null;
  }
  const key = cert.publicKey;
  const keyType = key.asymmetricKeyType ?? 'unknown';
  let weakSignature: string | null = null;
  try {
    const oid = AsnConvert.parse(cert.raw, Certificate).signatureAlgorithm.algorithm;
    weakSignature = WEAK_SIGNATURES[oid] ?? null;
  } catch {
    weakSignature = null;
  }
  if (keyType !== 'rsa' && keyType !== 'rsa-pss') return { keyType, weakSignature };
  const jwk = key.export({ format: 'jwk' });
  const modulus = jwk.n !== undefined ? BigInt(`0x${Buffer.from(jwk.n, 'base64url').toString('hex') || '0'}`) : undefined;
  return { keyType, rsaBits: key.asymmetricKeyDetails?.modulusLength ?? 0, ...(modulus !== undefined ? { modulus } : {}), weakSignature };
}

/*
 * ROCA (CVE-2017-15361; Nemec, Sýs, Švenda, Klinec, Matyáš, "The Return of Coppersmith's
 * Attack", ACM CCS 2017). The Infineon library built each prime as k·M + (65537^a mod M),
 * M the product of the first small primes. So for every small prime p dividing M, the
 * modulus N = p1·p2 is, mod p, a power of 65537: it lies in the multiplicative subgroup
 * that 65537 generates in (Z/pZ)*. A random modulus fails that for at least one of the
 * primes below with overwhelming probability (the paper's detector uses the same idea);
 * a vulnerable one passes all of them.
 */
const ROCA_PRIMES = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167];

/** For each prime, the set of residues 65537^k mod p (the subgroup 65537 generates). */
const ROCA_SUBGROUPS: ReadonlyArray<{ p: number; members: ReadonlySet<number> }> = ROCA_PRIMES.map((p) => {
  const members = new Set<number>();
  const g = 65537 % p;
  let x = 1;
  while (!members.has(x)) {
    members.add(x);
    x = (x * g) % p;
  }
  return { p, members };
});

/** True when `modulus` carries the ROCA fingerprint. */
export function hasRocaFingerprint(modulus: bigint): boolean {
  if (modulus <= 0n) return false;
  return ROCA_SUBGROUPS.every(({ p, members }) => members.has(Number(modulus % BigInt(p))));
}

/** The product of the primes the fingerprint tests (for building test moduli). */
export const ROCA_PRIME_PRODUCT: bigint = ROCA_PRIMES.reduce((acc, p) => acc * BigInt(p), 1n);

/*
 * Debian's openssl-blacklist (CVE-2008-0166) lists, per RSA size, the last 20 hex digits
 * of SHA-1 over "Modulus=<upper-case hex>\n" (the line `openssl rsa -modulus` prints) for
 * every key the broken generator could make. We compute the same digest and look it up
 * in the lists found on this machine; we ship no list of our own.
 */
export function debianBlacklistEntry(modulus: bigint): string {
  const line = `Modulus=${modulus.toString(16).toUpperCase()}\n`;
  return createHash('sha1').update(line).digest('hex').slice(20);
}
