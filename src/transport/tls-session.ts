/**
 * What OpenSSL's session says about a server-side TLS connection that Node does not
 * expose: the key-exchange group, the TLS-PSK identity (TLS 1.2) and the session's master
 * key. Owns: reading them from the DER session and naming groups. Must not: decide
 * anything (tls-context.ts refuses, tls-psk-sessions.ts remembers, metrics count).
 *
 * Node hands the session out DER-encoded (`getSession()`, OpenSSL's SSL_SESSION_ASN1,
 * ssl/ssl_asn1.c): a SEQUENCE of version, ssl_version, cipher, session_id, master_key,
 * then context-tagged optional fields, among them [8] psk_identity and [19] kex_group
 * (OpenSSL 3.2+). Why not `getEphemeralKeyInfo()`: Node answers it on client sockets
 * only. Measured on Node 24.22.3 and 26.12.1 (OpenSSL 3.5.9): [19] is 0x11ec for a hybrid
 * handshake and 0x1d for X25519, also on resumed sessions and on TLS 1.2; [8] holds the
 * TLS 1.2 PSK identity, also after resumption; a TLS 1.3 PSK session has no [8].
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

/** The fields of a DER SSL_SESSION that Bastion reads. */
export interface SessionFields {
  masterKey?: Buffer;
  /** TLS 1.2 PSK identity ([8]); absent on TLS 1.3 PSK sessions. */
  pskIdentity?: string;
  /** IANA group id ([19]). */
  kexGroup?: number;
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

/** The content of a primitive `tag` inside an EXPLICIT context field, or null. */
function explicitContent(der: Buffer, content: number, size: number, tag: number): Buffer | null {
  if (der[content] !== tag) return null;
  const inner = derLength(der, content + 1);
  if (inner === null || inner[1] + inner[0] > content + size) return null;
  return der.subarray(inner[1], inner[1] + inner[0]);
}

/**
 * Reads a DER SSL_SESSION. Malformed input gives the fields read so far (never a throw,
 * never a read past the end): a peer cannot shape this input anyway, but a parser of
 * security state must not trust its own assumptions about OpenSSL either.
 */
export function readSession(der: Buffer): SessionFields {
  const fields: SessionFields = {};
  if (der[0] !== 0x30) return fields;
  const outer = derLength(der, 1);
  if (outer === null) return fields;
  const end = Math.min(der.length, outer[1] + outer[0]);
  let at = outer[1];
  for (let index = 0; at < end; index++) {
    const tag = der[at]!;
    const len = derLength(der, at + 1);
    if (len === null || len[1] + len[0] > end) return fields;
    const [size, content] = len;
    if (index === 4 && tag === 0x04) fields.masterKey = der.subarray(content, content + size);
    if (tag === 0xa8) {
      const identity = explicitContent(der, content, size, 0x04);
      if (identity !== null) fields.pskIdentity = identity.toString('utf8');
    }
    if (tag === 0xb3) {
      const id = explicitContent(der, content, size, 0x02);
      if (id !== null && id.length <= 4) fields.kexGroup = id.reduce((v, b) => v * 256 + b, 0);
    }
    at = content + size;
  }
  return fields;
}

const groups = new WeakMap<TLSSocket, string>();

/** The group an established server-side TLS socket negotiated (read once per socket). */
export function negotiatedGroup(socket: TLSSocket): string {
  const known = groups.get(socket);
  if (known !== undefined) return known;
  const session = socket.getSession();
  const name = groupName(session !== undefined ? readSession(session).kexGroup : undefined);
  groups.set(socket, name);
  return name;
}
