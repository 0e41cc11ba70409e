/**
 * Audit checks that need the running broker: a revoked certificate still connected, one
 * certificate on several concurrent connections, and client-id takeover storms. Owns:
 * those checks over a plain snapshot. Must not: reach into the broker (whoever builds the
 * snapshot does; it is not wired yet, see docs/DEFENDER.md).
 */
import type { Finding } from './finding.js';

export interface LiveClient {
  readonly clientId: string;
  /** Upper-case hex serial of the client certificate, when it presented one. */
  readonly certSerial?: string;
  /** SHA-256 fingerprint of the client certificate, when it presented one. */
  readonly certFingerprint?: string;
  /** `address:port` of the peer. */
  readonly remote: string;
  readonly connectedAt: Date;
}

export interface LiveTakeover {
  readonly clientId: string;
  /** Session takeovers seen for this client id within the window. */
  readonly count: number;
  readonly windowMs: number;
}

export interface LiveSnapshot {
  readonly clients: readonly LiveClient[];
  readonly takeovers: readonly LiveTakeover[];
  /** Serials (upper-case hex) revoked in the PKI or by the CRLs the listeners use. */
  readonly revokedSerials: ReadonlySet<string>;
}

export interface LiveThresholds {
  /** This many takeovers of one client id within its window make a storm. */
  readonly takeoverStorm: number;
}

export const DEFAULT_LIVE_THRESHOLDS: LiveThresholds = { takeoverStorm: 5 };

const norm = (serial: string): string => serial.replace(/^0+(?=.)/, '').toUpperCase();

export function liveChecks(snapshot: LiveSnapshot, thresholds: LiveThresholds = DEFAULT_LIVE_THRESHOLDS): Finding[] {
  const out: Finding[] = [];
  const revoked = new Set([...snapshot.revokedSerials].map(norm));
  for (const c of snapshot.clients) {
    if (c.certSerial === undefined || !revoked.has(norm(c.certSerial))) continue;
    out.push({
      check: 'revoked-certificate-connected',
      severity: 'critical',
      subject: c.certSerial,
      message: `client ${c.clientId} from ${c.remote} is connected (since ${c.connectedAt.toISOString()}) with revoked certificate ${c.certSerial}`,
      fix: `disconnect it now (\`bastion clients kick ${c.clientId}\`); the CRL refuses its next connect`,
    });
  }
  // SECURITY: one device certificate on two live connections means the key was copied
  // (a cloned device) or is shared on purpose; both defeat per-device identity.
  const byCert = new Map<string, LiveClient[]>();
  for (const c of snapshot.clients) {
    const key = c.certFingerprint ?? (c.certSerial !== undefined ? norm(c.certSerial) : undefined);
    if (key === undefined) continue;
    const list = byCert.get(key) ?? [];
    list.push(c);
    byCert.set(key, list);
  }
  for (const [key, list] of byCert) {
    if (list.length < 2) continue;
    out.push({
      check: 'certificate-shared',
      severity: 'critical',
      subject: list[0]!.certSerial ?? key,
      message: `one certificate is used by ${list.length} concurrent connections: ${list.slice(0, 5).map((c) => `${c.clientId}@${c.remote}`).join(', ')}`,
      fix: 'find the copy, revoke the certificate (`bastion cert revoke SERIAL`) and give each device its own key and certificate',
    });
  }
  for (const t of snapshot.takeovers) {
    if (t.count < thresholds.takeoverStorm) continue;
    out.push({
      check: 'conflicting-client-ids',
      severity: 'high',
      subject: t.clientId,
      message: `client id ${t.clientId} was taken over ${t.count} times in ${Math.round(t.windowMs / 1000)} s: several devices use it and keep disconnecting each other`,
      fix: 'give each device its own client id (bind rules to ${clientId} or ${cert.cn} so one device cannot take another id)',
    });
  }
  return out;
}
