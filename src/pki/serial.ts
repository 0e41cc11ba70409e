/**
 * Certificate serial numbers. Owns: generating random, positive, fixed-length serials.
 * Must not: derive serials from anything guessable (counters, time).
 */
import { randomBytes } from 'node:crypto';

/** Length of generated serials in bytes (RFC 5280 allows up to 20). */
export const SERIAL_BYTES = 16;

/**
 * A random 16-byte serial number as upper-case hex (32 characters), the form Node's
 * `X509Certificate.serialNumber` and `TLSSocket.getPeerCertificate().serialNumber` report.
 * SECURITY: 126 random bits (CA/B Forum asks for at least 64). The top byte is forced into
 * 0x40..0x7f, so the DER INTEGER is positive, needs no 0x00 pad and never loses a leading
 * zero byte: the hex here is exactly what every tool prints.
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(SERIAL_BYTES);
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return bytes.toString('hex').toUpperCase();
}
