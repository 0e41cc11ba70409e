/**
 * The "certs-only" CMS message EST answers with (RFC 7030 §4.1.3, §4.2.3; RFC 5652): a
 * degenerate SignedData with certificates and no signers, and the PEM ↔ DER conversions
 * around it. Owns: that encoding. Must not: decide which certificates go in it (est.ts) or
 * read a file.
 *
 * SECURITY: only certificates that parse as one DER element go in; nothing is signed here,
 * and a certs-only message proves nothing by itself (the device trusts the TLS channel).
 */
import { DerError, explicit, integer, oid, parseDer, sequence, Tag, tlv } from '../pki/der.js';
import { derToPem } from '../pki/keys.js';

const ID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const ID_DATA = '1.2.840.113549.1.7.1';
const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

/** The DER of every certificate in a PEM bundle, in order; an error on a block that is not one DER element. */
export function pemCertificatesToDer(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const match of pem.matchAll(CERTIFICATE_BLOCK)) {
    const body = (match[1] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new DerError(`certificate ${out.length + 1} of the bundle is not base64`);
    const der = Buffer.from(body, 'base64');
    if (parseDer(der).tag !== Tag.Sequence) throw new DerError(`certificate ${out.length + 1} of the bundle is not a SEQUENCE`);
    out.push(der);
  }
  return out;
}

/**
 * ContentInfo { signedData, SignedData { version 1, digestAlgorithms {}, encapContentInfo
 * { data }, certificates [0] IMPLICIT, signerInfos {} } }. The certificates keep the given
 * order (leaf first, then its chain), as OpenSSL and EST clients read it; strict DER would
 * sort a SET OF, which would lose that order, so it is not sorted (a BER-valid encoding).
 */
export function certsOnly(certificates: readonly Uint8Array[]): Buffer {
  if (certificates.length === 0) throw new DerError('a certs-only message needs at least one certificate');
  const signedData = sequence(
    integer(1n),
    tlv(Tag.Set, Buffer.alloc(0)),
    sequence(oid(ID_DATA)),
    tlv(0xa0, Buffer.concat(certificates)),
    tlv(Tag.Set, Buffer.alloc(0)),
  );
  return sequence(oid(ID_SIGNED_DATA), explicit(0, signedData));
}

/** A base64 DER PKCS#10 request (whitespace allowed) as PEM; null when it is not base64 of one DER SEQUENCE. */
export function base64CsrToPem(text: string): string | null {
  const body = text.replace(/\s+/g, '');
  if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return null;
  const der = Buffer.from(body, 'base64');
  try {
    if (parseDer(der).tag !== Tag.Sequence) return null;
  } catch {
    return null;
  }
  return derToPem(der, 'CERTIFICATE REQUEST');
}
