/**
 * The key-exchange group a TLS connection negotiated, seen from the server. Owns: reading
 * it and naming it. Must not: decide anything (tls-context.ts refuses, metrics count).
 *
 * Why not `getEphemeralKeyInfo()`: Node answers it on client sockets only (null on a
 * server socket). OpenSSL 3.2+ records the group in the session (`kex_group`), and Node
 * hands the session out DER-encoded (`getSession()`), where it is the context-specific
 * field [19] of the top-level SEQUENCE (ssl/ssl_asn1.c), an INTEGER holding the IANA
 * TLS group id. Measured on Node 24.22.3 and 26.12.1 (OpenSSL 3.5.9): 0x11ec for a
 * hybrid handshake, 0x1d for X25519, also on resumed sessions and on TLS 1.2.
 */
import type { TLSSocket } from 'node:tls';

/** IANA TLS Supported Groups ids → the names Bastion's config uses (core/tls-config.ts canonicalGroupName). */
const GROUP_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0017, 'P-256'],
  [0x0018, 'P-384'],
  [0x0019, 'P-521'],
  [0x001d, 'X25519'],
  [0x001e, 'X448'],
  [0x0100, 'ffdhe2048'],
  [0x0101, 'ffdhe3072'],
  [0x0102, 'ffdhe4096'],
  [0x0200, 'MLKEM512'],
  [0x0201, 'MLKEM768'],
  [0x0202, 'MLKEM1024'],
  [0x11eb, 'SecP256r1MLKEM768'],
  [0x11ec, 'X25519MLKEM768'],
  [0x11ed, 'SecP384r1MLKEM1024'],
]);

/** No key exchange took place (a TLS 1.3 PSK-only handshake) or the session did not say. */
const NO_GROUP = 'none';

/** The group's name, `0x….` for an id we do not know, NO_GROUP when there is none. */
export function groupName(id: number | undefined): string {
  if (id === undefined || id === 0) return NO_GROUP;
  return GROUP_NAMES.get(id) ?? `0x${id.toString(16).padStart(4, '0')}`;
}

/** A DER length at `at`: [value, offset of the content], or null when malformed. */
function derLength(der: Buffer, at: number): [number, number] | null {
  const first = der[at];
  if (first === undefined) return null;
  if (first < 0x80) return [first, at + 1];
  const n = first & 0x7f;
  if (n === 0 || n > 3 || at + 1 + n > der.length) return null;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[at + 1 + i]!;
  return [len, at + 1 + n];
}

/** The kex_group of a DER SSL_SESSION, or undefined when it holds none (or is malformed). */
export function sessionKexGroup(der: Buffer): number | undefined {
  if (der[0] !== 0x30) return undefined;
  const outer = derLength(der, 1);
  if (outer === null) return undefined;
  const end = Math.min(der.length, outer[1] + outer[0]);
  let at = outer[1];
  while (at < end) {
    const tag = der[at]!;
    const len = derLength(der, at + 1);
    if (len === null) return undefined;
    const [size, content] = len;
    // [19] EXPLICIT INTEGER: context-specific, constructed, tag number 19.
    if (tag === 0xb3) {
      if (der[content] !== 0x02) return undefined;
      const inner = derLength(der, content + 1);
      if (inner === null || inner[0] > 4) return undefined;
      let id = 0;
      for (let i = 0; i < inner[0]; i++) id = id * 256 + (der[inner[1] + i] ?? 0);
      return id;
    }
    at = content + size;
  }
  return undefined;
}

const cache = new WeakMap<TLSSocket, string>();

/** The group an established server-side TLS socket negotiated (read once per socket). */
export function negotiatedGroup(socket: TLSSocket): string {
  const known = cache.get(socket);
  if (known !== undefined) return known;
  const session = socket.getSession();
  const name = groupName(session !== undefined ? sessionKexGroup(session) : undefined);
  cache.set(socket, name);
  return name;
}
