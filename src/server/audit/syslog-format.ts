/**
 * RFC 5424 syslog messages for audit records, and their transport framing. Owns: the
 * header fields (PRI, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID), the structured-data
 * element carrying the audit chain, the UDP size cap (RFC 5426) and octet counting for
 * TCP and TLS (RFC 6587 §3.4.1, RFC 5425 §4.3). Must not: open sockets (syslog-sink.ts
 * does) or choose fields (the MSG is the ECS document from security/audit/ecs.ts).
 *
 * The SD-ID is `bastion@32473`: the private-enterprise-number form RFC 5424 §7.2.2
 * requires for non-IANA ids, with 32473, the PEN RFC 5612 reserves for documentation
 * examples. A deployment with its own PEN would put it here.
 */
import type { AuditRecord } from '../../security/audit/record.js';

export const SD_ID = 'bastion@32473';

/** RFC 5424 NILVALUE. */
const NIL = '-';

/**
 * Largest UDP datagram we send. RFC 5426 §3.2: receivers MUST accept 480 octets (IPv4),
 * 1180 (IPv6), SHOULD accept 2048. Our ECS documents measured 1.0–1.8 KB (limit hit
 * 1,042 B; mTLS connection with a certificate 1,749 B), so 2048 would cut common records.
 * 8 KiB fits every record but admin changes with large details, matches rsyslog's default
 * maximum message size, and stays far below the 65,507-octet UDP limit (loopback and LAN
 * collectors reassemble fragments). Longer messages are cut at a UTF-8 boundary and
 * marked `truncated="1"`: the chain fields in the SD survive, so the full record can be
 * found in the audit log or the JSON-lines file.
 */
export const UDP_MAX_BYTES = 8192;

export interface SyslogHeader {
  /** 0..23 */
  facility: number;
  hostname: string;
  appName: string;
  procId: string;
}

/** PRINTUSASCII (33..126) only, at most `max` characters; NILVALUE when nothing is left. */
function printable(value: string, max: number): string {
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (c >= 33 && c <= 126) out += ch;
    if (out.length >= max) break;
  }
  return out === '' ? NIL : out;
}

/** SD-PARAM values escape `"`, `\` and `]` with a backslash (RFC 5424 §6.3.3). */
export function escapeSdValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** RFC 5424 PRI value. */
export function priority(facility: number, severity: number): number {
  return facility * 8 + severity;
}

/** The structured-data element: the record's place in the audit chain. */
export function structuredData(record: AuditRecord, extra: Record<string, string> = {}): string {
  const params: Array<[string, string]> = [
    ['seq', String(record.seq)],
    ['hash', record.hash],
    ['prevHash', record.prevHash],
    ['event', record.event.type],
    ...Object.entries(extra),
  ];
  return `[${SD_ID}${params.map(([k, v]) => ` ${k}="${escapeSdValue(v)}"`).join('')}]`;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, MSG
 * being `msg` (BOM-free UTF-8, so MSG-ANY in RFC 5424 terms). With `maxBytes`, a longer
 * message has its MSG cut at a character boundary and the SD says `truncated="1"`.
 */
export function formatSyslog(header: SyslogHeader, severity: number, record: AuditRecord, msg: string, maxBytes?: number): Buffer {
  const head =
    `<${priority(header.facility, severity)}>1 ${new Date(record.ts).toISOString()} ` +
    `${printable(header.hostname, 255)} ${printable(header.appName, 48)} ${printable(header.procId, 128)} ${printable(record.event.type, 32)} `;
  const full = Buffer.from(`${head}${structuredData(record)} ${msg}`, 'utf8');
  if (maxBytes === undefined || full.length <= maxBytes) return full;
  const prefix = Buffer.from(`${head}${structuredData(record, { truncated: '1' })} `, 'utf8');
  const body = Buffer.from(msg, 'utf8');
  let keep = Math.max(0, maxBytes - prefix.length);
  // Back up over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (keep > 0 && keep < body.length && (body[keep]! & 0xc0) === 0x80) keep--;
  return Buffer.concat([prefix, body.subarray(0, keep)]);
}

/** Octet-counting frame for stream transports: `MSG-LEN SP SYSLOG-MSG` (RFC 6587 §3.4.1, RFC 5425 §4.3). */
export function octetCounted(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}
