/**
 * What the offline audit checks look at: a plain, already-read snapshot of a data
 * directory and its config. Owns: the input's shape and the default thresholds. Must not:
 * read files (src/server/defender-audit-input.ts does, for the CLI and the running broker,
 * because finding the PKI directory and the listeners' revocation sources belongs to
 * server/ and transport/).
 */
import type { BastionConfig } from '../../core/config.js';
import type { AclPolicy } from '../../core/authz-config.js';
import type { InventoryRecord } from '../../store/sqlite/pki-inventory.js';

/** A provisioning claim as the provisioning store lists it (times in ms since the epoch). */
export interface AuditClaim {
  readonly serialNumber: string;
  readonly template: string;
  /** 0: no limit. */
  readonly maxDevices: number;
  readonly devices: number;
  readonly expiresAt: number;
  readonly revokedAt: number | null;
}

export interface AuditThresholds {
  /** A certificate expiring within this many days is a finding. */
  readonly expiringDays: number;
  /** A certificate issued longer ago than this is a (low) finding. */
  readonly maxAgeDays: number;
  /** A claim with devices ≥ this fraction of maxDevices is over-used. */
  readonly claimUseFraction: number;
}

export const DEFAULT_THRESHOLDS: AuditThresholds = { expiringDays: 30, maxAgeDays: 365, claimUseFraction: 0.9 };

/** The PKI directory's state as far as the checks need it. */
export interface AuditPki {
  readonly dir: string;
  /** Every certificate of the inventory (valid and revoked). */
  readonly records: readonly InventoryRecord[];
  /** `<pki>/root.key` exists: the root can sign without being brought back. */
  readonly rootKeyOnline: boolean;
  /** nextUpdate of each CRL in `<pki>/crl.pem`; empty when there is none. */
  readonly crlNextUpdates: readonly Date[];
}

/** A CRL file named by a listener's tls.crl. */
export interface AuditCrlFile {
  readonly listener: string;
  readonly path: string;
  /** null when the file cannot be read or parsed. */
  readonly nextUpdates: readonly Date[] | null;
}

export interface AuditInput {
  readonly config: BastionConfig;
  /** Absent when the data directory has no PKI. */
  readonly pki?: AuditPki;
  /** The effective rule set (config + rule store). */
  readonly policy: AclPolicy;
  /** Absent when there is no provisioning.db. */
  readonly claims?: readonly AuditClaim[];
  /** Listeners that accept client certificates with nothing to revoke them (server/listener-lint.ts decides). */
  readonly listenersWithoutRevocation: readonly string[];
  readonly crlFiles: readonly AuditCrlFile[];
  /**
   * Lines of the Debian weak-key blacklists (openssl-blacklist) keyed by RSA size, when
   * such files are present on this machine; absent: the Debian check is not run.
   */
  readonly debianBlacklist?: ReadonlyMap<number, ReadonlySet<string>>;
  readonly now: Date;
  readonly thresholds: AuditThresholds;
}
