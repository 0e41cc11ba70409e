/**
 * The built-in PKI's leaf certificates, shared by the nodes of a cluster (issue 12). Every
 * node holds the same CA (the operator copies `<dataDir>/pki` before the first start), so a
 * certificate one node issued is trusted everywhere; this kind makes it KNOWN everywhere:
 * each server/client row of `<pkiDir>/inventory.db` is the entry `pki.<serial>` of the
 * shared state bucket (cluster-pki-entry.ts), so any node revokes what another issued and
 * every node's CRL lists every revocation. Owns: noticing this node's inventory changes
 * (the CLI, the broker's own signing, other processes on the pki dir), publishing them,
 * importing the cluster's, re-signing this node's CRL when an imported revocation is new
 * here, and keeping `crl.number` above the CRL numbers other nodes published. Must not:
 * talk to NATS itself (cluster/shared-state.ts), apply CRLs to listeners (their watcher of
 * crl.pem does, and SharedRevocations publishes the result) or share the CA certificates
 * and keys (the operator copies them; root and intermediate rows stay local).
 *
 * How changes are found: a 250 ms poll of `PRAGMA data_version` on a connection held here
 * (it moves only when another connection committed), then a snapshot of (serial, status,
 * revoked_at) of the leaf rows; PEMs are read only for rows that changed. A change is
 * published by compare-and-set with the join (cluster-pki-entry.ts), so a publish never
 * puts `valid` over another node's revocation. An entry from the bucket is joined into the
 * local row; where the join differs from the entry, the join goes back to the bucket (a
 * `valid` entry over a revoked row here is a SECURITY warning, answered with the revoked row).
 *
 * Why the CRLs converge. Two nodes that re-sign a CRL of the same CA overwrite each other
 * in `crl.<hash>`, and each CRL lists what its node's inventory holds. Take A revoking x and
 * B revoking y at once, both counters at 4: A signs #5 {x}, B signs #5 {y}; of the two the
 * bucket keeps the later thisUpdate, say B's, so for a moment A's x is missing from the
 * cluster's CRL (A's own listeners still refuse x from A's crl.pem). But `pki.x` reaches B
 * and `pki.y` reaches A; each import is a revocation new to that node, so each re-signs
 * (debounced 100 ms) from an inventory that now holds x and y: #6 {x, y} on both. Whichever
 * #6 wins, it carries the union. The counters matter when nodes drift apart: B idle at 2
 * while A reached 40 would sign #3, which every node ignores as older than #40. So
 * SharedRevocations tells this kind of every verified CRL of another node it applied, and
 * `crl.number` is raised to at least that number (PkiInventory.raiseCounter): B's next CRL
 * is #41. In general: a node's CRL numbers only grow; each node re-signs after the last
 * revocation it imports; so the highest-numbered CRL of the cluster is some node's last
 * one, signed after that node knew every revocation: the bucket's winner holds the union.
 *
 * SECURITY: entries are validated (cluster-pki-entry.ts); a certificate of another CA is
 * skipped (debug log, `foreign` counter), never imported; a serial known here with another
 * certificate is refused; nothing from the cluster un-revokes a row. Only leaves issued by
 * this node's issuing CA (intermediate if the PKI has one, else root) are shared.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';
import { describeCertificate, parseCrls, type CrlInfo } from '../pki/index.js';
import { PkiInventory, type InventoryRecord } from '../store/sqlite/pki-inventory.js';
import { decodeEntry, encodeEntry, joinStanding, PKI_PREFIX, pkiKeyOf, sameStanding, serialOfKey, standingOf, type IssuingCaCert, type PkiEntry, type Standing } from './cluster-pki-entry.js';
import { assertCaExists } from './pki-ca-store.js';
import { ISSUING_CRL_DAYS } from './pki-crl.js';
import { pkiLayout, type PkiLayout } from './pki-layout.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import { PkiService } from './pki-service.js';
import { normalizeDistinguishedName } from './revocation.js';

/** How often the inventory is checked for this node's changes. */
const POLL_MS = 250;
/** Revocations imported together are one re-signed CRL. */
const RESIGN_DEBOUNCE_MS = 100;
/** Compare-and-set writes in flight at once (the first attach may publish thousands). */
const MAX_IN_FLIGHT = 8;
/** The inventory setting the CRL numbers come from (pki-crl.ts, CRL_NUMBER). */
const CRL_NUMBER = 'crl.number';
const DAY_MS = 86_400_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isLeaf(record: InventoryRecord): boolean {
  return record.kind === 'server' || record.kind === 'client';
}

/** The issuing CA's certificate as the files show it now. */
function readIssuing(layout: PkiLayout): IssuingCaCert {
  let pem: string;
  try {
    pem = readFileSync(layout.intermediateCert, 'utf8');
  } catch {
    pem = readFileSync(layout.rootCert, 'utf8');
  }
  return { cert: new X509Certificate(pem), serialNumber: describeCertificate(pem).serialNumber };
}

type LocalState = { status: string; revokedAt: number | null; reason: string | null };

export class ClusterPki implements SharedKind {
  private state: SharedState | null = null;
  private issuing: IssuingCaCert;
  /** The bucket's entries of this CA as last read: standing and certificate fingerprint. */
  private readonly bucket = new Map<string, { standing: Standing; fingerprint256: string }>();
  /** Entries read before attach (the initial read), merged at attach. */
  private pending: Map<string, PkiEntry> | null = new Map();
  /** The leaf rows of the inventory as last seen. */
  private readonly known = new Map<string, LocalState>();
  private lastVersion = -1;
  private readonly toPublish = new Set<string>();
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private resignTimer: NodeJS.Timeout | null = null;
  private resigning: Promise<void> | null = null;
  private resignAgain = false;
  /** Whether a pending re-sign must happen even if crl.pem lists every revocation (a new import). */
  private resignForced = false;
  private stopped = false;
  /** Entries of another CA's certificates, skipped. */
  foreign = 0;
  /** Entries from the cluster imported as new rows. */
  imported = 0;
  /** CRLs re-signed because a revocation from the cluster was new here. */
  resigned = 0;

  private constructor(
    private readonly layout: PkiLayout,
    private readonly inventory: PkiInventory,
    private readonly logger: Logger,
  ) {
    this.issuing = readIssuing(layout);
  }

  /** The kind for the PKI in `pkiDir`, or null when no CA was created there (nothing to share). */
  static async open(pkiDir: string, logger: Logger): Promise<ClusterPki | null> {
    const layout = pkiLayout(pkiDir);
    try {
      await assertCaExists(layout);
    } catch {
      return null;
    }
    return new ClusterPki(layout, PkiInventory.open(layout.inventory), logger);
  }

  /** Before the shared state's start. */
  register(state: SharedState): void {
    this.state = state;
    state.register(PKI_PREFIX, this);
  }

  apply(key: string, value: Uint8Array | null): void {
    const serial = serialOfKey(key);
    if (serial === null) throw new Error('not a key pki.<upper-case hex serial>');
    if (value === null) {
      // A deleted entry lifts nothing; the row here (if any) goes back so others keep learning it.
      this.bucket.delete(serial);
      this.pending?.delete(serial);
      if (this.pending === null && this.known.has(serial)) this.publish(serial);
      return;
    }
    const entry = decodeEntry(key, value, this.issuing);
    if (entry === 'foreign') {
      this.foreign++;
      this.logger.debug({ key }, 'a PKI entry of the cluster is another CA\'s certificate; skipped');
      return;
    }
    if ('why' in entry) throw new Error(`PKI entry refused: ${entry.why}`);
    this.bucket.set(serial, { standing: entry.standing, fingerprint256: entry.record.fingerprint256 });
    if (this.pending !== null) this.pending.set(serial, entry);
    else this.merge(entry);
  }

  /** The first call ends the initial read: the inventory and the bucket are reconciled, then followed. */
  settled(): void {
    if (this.pending === null || this.state === null || this.stopped) return;
    const pending = this.pending;
    this.pending = null;
    this.lastVersion = this.inventory.dataVersion();
    for (const row of this.inventory.leafStates()) {
      this.known.set(row.serialNumber, { status: row.status, revokedAt: row.revokedAt, reason: row.reason });
      if (!pending.has(row.serialNumber) && !this.bucket.has(row.serialNumber)) this.publish(row.serialNumber);
    }
    for (const entry of pending.values()) this.merge(entry);
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
    this.logger.info({ leaves: this.known.size, bucket: this.bucket.size, publishing: this.toPublish.size }, 'PKI inventory shared with the cluster');
  }

  /**
   * A verified CRL of another node was applied: when it is this CA's, the next CRL signed
   * here gets a higher number (see the header: a lower one would be ignored cluster-wide).
   */
  onClusterCrl(crl: CrlInfo): void {
    if (crl.crlNumber === null || this.stopped) return;
    if (normalizeDistinguishedName(crl.issuer) !== normalizeDistinguishedName(this.issuing.cert.subject)) return;
    if (this.inventory.raiseCounter(CRL_NUMBER, crl.crlNumber)) this.logger.debug({ crlNumber: crl.crlNumber.toString() }, 'CRL number raised to the cluster\'s');
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.resignTimer !== null) clearTimeout(this.resignTimer);
    const close = (): void => this.inventory.close();
    if (this.resigning !== null) void this.resigning.finally(close);
    else close();
  }

  /** Joins an entry of the cluster into the inventory (never backwards); the join goes back where it says more. */
  private merge(entry: PkiEntry): void {
    const serial = entry.serialNumber;
    const local = this.inventory.get(serial);
    if (local === undefined) {
      this.inventory.insertRecord(entry.record);
      this.imported++;
      this.remember(serial);
      this.logger.info({ serial, commonName: entry.record.commonName, status: entry.standing.status }, 'certificate issued by another node of the cluster recorded');
      if (entry.standing.status === 'revoked') this.scheduleResign();
      return;
    }
    if (!isLeaf(local) || local.fingerprint256 !== entry.record.fingerprint256) {
      this.logger.error({ serial, kind: local.kind }, 'SECURITY: a PKI entry of the cluster has the serial of another certificate here; ignored');
      return;
    }
    const mine = standingOf(local);
    const joined = joinStanding(mine, entry.standing);
    if (joined.status === 'revoked' && (mine.status === 'valid' || joined.revokedAt !== mine.revokedAt || joined.reason !== mine.reason)) {
      this.inventory.revokeNoLaterThan(serial, new Date(joined.revokedAt!), joined.reason);
      this.remember(serial);
      if (mine.status === 'valid') {
        this.logger.info({ serial, commonName: local.commonName, reason: joined.reason }, 'certificate revoked by another node of the cluster');
        this.scheduleResign();
      }
    }
    if (entry.standing.status === 'valid' && mine.status === 'revoked') {
      this.logger.warn({ serial, commonName: local.commonName }, 'SECURITY: a PKI entry of the cluster says valid for a certificate revoked here; it stays revoked and the revocation is published again');
    }
    if (!sameStanding(joined, entry.standing)) this.publish(serial);
  }

  /** Whether crl.pem's CRL of the issuing CA lists every revoked leaf of the inventory that CRL must list. */
  private crlCoversInventory(): boolean {
    let listed: Set<string>;
    try {
      const subject = normalizeDistinguishedName(this.issuing.cert.subject);
      const crl = parseCrls(readFileSync(this.layout.crl, 'utf8')).find((c) => normalizeDistinguishedName(c.issuer) === subject);
      if (crl === undefined) return false;
      listed = new Set(crl.revoked.keys());
    } catch {
      return false;
    }
    // A minute inside signCrl's cut (pki-crl.ts): an entry it may drop at the edge is not demanded.
    const since = new Date(Date.now() - ISSUING_CRL_DAYS * DAY_MS + 60_000);
    return this.inventory.revokedIssuedBy(this.issuing.serialNumber, since).every((e) => listed.has(e.serialNumber));
  }

  private remember(serial: string): void {
    const r = this.inventory.get(serial);
    if (r !== undefined) this.known.set(serial, { status: r.status, revokedAt: r.revokedAt?.getTime() ?? null, reason: r.reason });
  }

  /** This node's changes: only when another connection committed since the last look. */
  private poll(): void {
    if (this.stopped) return;
    try {
      if (this.state?.ready === true && this.toPublish.size > 0) this.pump();
      const version = this.inventory.dataVersion();
      if (version === this.lastVersion) return;
      this.lastVersion = version;
      try {
        this.issuing = readIssuing(this.layout);
      } catch (err) {
        this.logger.warn({ err: errText(err) }, 'the issuing CA certificate could not be read again; the last one read is kept');
      }
      for (const row of this.inventory.leafStates()) {
        const seen = this.known.get(row.serialNumber);
        if (seen !== undefined && seen.status === row.status && seen.revokedAt === row.revokedAt && seen.reason === row.reason) continue;
        this.known.set(row.serialNumber, { status: row.status, revokedAt: row.revokedAt, reason: row.reason });
        this.publish(row.serialNumber);
        // Revoked by another process here: its own re-sign may have raced one of ours (see resign()).
        if (row.status === 'revoked' && seen?.status !== 'revoked') this.scheduleResign(false);
      }
    } catch (err) {
      this.logger.error({ err: errText(err) }, 'the PKI inventory could not be read for changes to share; trying again');
    }
  }

  private publish(serial: string): void {
    this.toPublish.add(serial);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < MAX_IN_FLIGHT && this.toPublish.size > 0) {
      const serial = this.toPublish.values().next().value!;
      this.toPublish.delete(serial);
      this.inFlight++;
      this.send(serial).then(
        () => {
          this.inFlight--;
          this.pump();
        },
        (err: unknown) => {
          this.inFlight--;
          // Sent again by the poll once the shared state is ready (after a NATS outage).
          if (!this.stopped) this.toPublish.add(serial);
          this.logger.warn({ serial, err: errText(err) }, 'a PKI inventory change could not be shared with the cluster; retrying');
        },
      );
    }
  }

  /** Writes the join of this node's row and the bucket's entry, unless the bucket holds it already. */
  private async send(serial: string): Promise<void> {
    const state = this.state;
    if (state === null) return;
    const key = pkiKeyOf(serial);
    await state.compareAndSet(key, (current) => {
      // Stopped while the read was out: the inventory is closed, and this write is moot.
      if (this.stopped) return null;
      const row = this.inventory.get(serial);
      if (row === undefined || !isLeaf(row) || row.issuerSerial !== this.issuing.serialNumber) return null;
      const mine = standingOf(row);
      if (current === null) return encodeEntry(row.certPem, mine);
      const there = decodeEntry(key, current, this.issuing);
      // SECURITY: junk must not hold back a real entry; another CA's certificate is not ours to replace.
      if (there !== 'foreign' && 'why' in there) return encodeEntry(row.certPem, mine);
      if (there === 'foreign' || there.record.fingerprint256 !== row.fingerprint256) {
        this.logger.error({ serial }, 'SECURITY: the cluster holds another certificate under this serial; this node\'s row is not shared');
        return null;
      }
      const joined = joinStanding(mine, there.standing);
      return sameStanding(joined, there.standing) ? null : encodeEntry(row.certPem, joined);
    });
  }

  /** `force`: an imported revocation is new here; else only if crl.pem misses a revocation of the inventory. */
  private scheduleResign(force = true): void {
    if (force) this.resignForced = true;
    if (this.stopped || this.resignTimer !== null) return;
    this.resignTimer = setTimeout(() => {
      this.resignTimer = null;
      if (this.resigning !== null) {
        this.resignAgain = true;
        return;
      }
      const force = this.resignForced;
      this.resignForced = false;
      this.resigning = this.resign(force).finally(() => {
        this.resigning = null;
        if (this.resignAgain && !this.stopped) {
          this.resignAgain = false;
          this.scheduleResign(false);
        }
      });
    }, RESIGN_DEBOUNCE_MS);
    this.resignTimer.unref();
  }

  /**
   * crl.pem again from the inventory: its watcher makes the listeners load it and
   * SharedRevocations publish it. Two writers of crl.pem (this and `bastion cert revoke`, or
   * two CLI runs) can interleave so that the one which read the inventory first renames
   * last, leaving a file without the other's revocation; so after each re-sign, and after
   * each revocation by another process here, the file is checked against the inventory and
   * re-signed while it misses one.
   */
  private async resign(force: boolean): Promise<void> {
    try {
      if (!force && this.crlCoversInventory()) return;
      const service = await PkiService.open(this.layout.dir, { passphrase: rootKeyPassphraseFromEnv() });
      try {
        const written = await service.writeCrl();
        this.resigned++;
        const first = parseCrls(written.pem)[0];
        const fields = { crlNumber: first?.crlNumber?.toString() ?? null, revoked: first?.revoked.size ?? null };
        if (force) this.logger.info(fields, 'CRL re-signed with revocations from the cluster');
        else this.logger.warn(fields, 'CRL re-signed: crl.pem missed a revocation of the inventory (two writers of it raced)');
      } finally {
        service.close();
      }
      // Once after an import's re-sign (never after a check's own, so a file that cannot
      // satisfy the check costs one extra CRL per local revocation, not a loop).
      if (force) this.scheduleResign(false);
    } catch (err) {
      this.logger.error({ err: errText(err) }, 'SECURITY: the CRL could not be re-signed with revocations from the cluster; the cluster\'s CRL still carries them; retrying at the next one');
    }
  }
}
