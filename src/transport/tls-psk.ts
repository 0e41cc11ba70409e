/**
 * TLS-PSK identities. Owns: parsing and checking the PSK file (YAML `identity: hexkey`).
 * Must not: read the file (the TLS context manager does, so reload follows one path).
 *
 * SECURITY: keys shorter than 16 bytes (128 bits) are refused at load; identities are
 * printable text without control characters, so they are safe to log and to use as a
 * principal.
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';

const MIN_PSK_BYTES = 16;
/** RFC 4279 allows identities up to 2^16-1 bytes; nobody needs more than this. */
const MAX_IDENTITY_LENGTH = 128;
const IDENTITY = /^[\x21-\x7e][\x20-\x7e]*$/;
const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/** Parses the PSK file's text into identity → key. Throws ConfigError naming the entry. */
export function parsePskFile(text: string, path: string): Map<string, Buffer> {
  let doc: unknown;
  try {
    // The failsafe schema reads every scalar as a string: an all-digit hex key must not
    // become a number (losing leading zeros and precision).
    doc = parseYaml(text, { schema: 'failsafe' });
  } catch (err) {
    throw new ConfigError(`psk file ${path}: not valid YAML (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`psk file ${path}: expected a mapping of identity: hexkey`);
  }
  const keys = new Map<string, Buffer>();
  for (const [identity, value] of Object.entries(doc as Record<string, unknown>)) {
    if (identity.length > MAX_IDENTITY_LENGTH || !IDENTITY.test(identity)) {
      throw new ConfigError(`psk file ${path}: identity ${JSON.stringify(identity.slice(0, 40))} must be 1-${MAX_IDENTITY_LENGTH} printable ASCII characters`);
    }
    const hex = value;
    if (typeof hex !== 'string' || !HEX.test(hex)) {
      throw new ConfigError(`psk file ${path}: the key of ${identity} must be an even number of hex digits`);
    }
    if (hex.length / 2 < MIN_PSK_BYTES) {
      throw new ConfigError(`psk file ${path}: the key of ${identity} has ${hex.length / 2} bytes; at least ${MIN_PSK_BYTES} are required`);
    }
    keys.set(identity, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new ConfigError(`psk file ${path}: no identities`);
  return keys;
}
