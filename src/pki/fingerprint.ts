/**
 * Certificate identity strings. Owns: the SHA-256 fingerprint and serial formats, taken
 * from Node's own X509Certificate so they equal what `TLSSocket.getPeerCertificate()`
 * reports for the same certificate at connect time. Must not: parse certificates by hand.
 */
import { X509Certificate } from 'node:crypto';
import { PkiError } from './pki-error.js';

/** Parses one PEM certificate with Node's parser; ERR_PKI_INVALID_INPUT if it cannot. */
export function parseNodeCertificate(certPem: string): X509Certificate {
  try {
    return new X509Certificate(certPem);
  } catch {
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'cannot parse certificate PEM');
  }
}

/** SHA-256 fingerprint of the DER certificate: upper-case hex pairs joined by ':'. */
export function fingerprint256(certPem: string): string {
  return parseNodeCertificate(certPem).fingerprint256;
}
