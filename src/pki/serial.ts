/**
 * Certificate serial numbers. Owns: generating random, positive, fixed-length serials.
 * Must not: derive serials from anything guessable (counters, time).
 */
import { randomBytes } from 'node:crypto';
import { PkiError } from './pki-error.js';

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

/**
 * A serial number given by a caller or read from a CRL/OCSP message in the one form we
 * compare: upper-case hex without colons or leading zero bytes (as Node prints it).
 * Throws ERR_PKI_INVALID_INPUT for anything that is not hex.
 */
export function normalizeSerial(serial: string): string {
  if (typeof serial !== 'string') throw new PkiError('ERR_PKI_INVALID_INPUT', 'serial number must be a hex string');
  let hex = serial.replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{1,80}$/.test(hex)) throw new PkiError('ERR_PKI_INVALID_INPUT', `serial number ${JSON.stringify(serial.slice(0, 90))} is not hex`);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2);
  return hex;
}
