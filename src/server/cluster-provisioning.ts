/**
 * Device provisioning across the nodes of a cluster (issue 13): every node keeps its own
 * provisioning.db, and every row of it (claims, one-time tokens, ownership tokens, devices,
 * renewals) is also an entry `prov.<table>.<id>` of the shared state bucket. So a token
 * made with `bastion provision token create` on one machine works on any node, once; a
 * device provisioned on one node renews on another; and the first use of a renewed
 * certificate on any node supersedes the old one. Owns: the replica (entries in, rows
 * out, the poll for other processes' writes) and the store every node's provisioning
 * service uses in cluster mode. Must not: decide anything about provisioning
 * (src/provisioning/ does) or talk to NATS except through SharedState.
 *
 * How it stays right:
 * - Every write to the bucket is a compare-and-set that JOINS the row with the bucket's
 *   version (provisioning/provisioning-rows.ts): a node that has not yet seen a spend can
 *   never publish the token as unspent again, and two nodes' changes to one row both stay.
 * - The three "once" operations (a token, an ownership token, a claim's device slot) are
 *   decided by that compare-and-set alone: the spend is the bucket write that finds the
 *   record still unspent (or the claim under its limit), so of two nodes racing exactly
 *   one wins, as of two processes on one SQLite file. The winner then writes its file.
 * - Entries from the bucket are joined into the file; one that the file had already
 *   moved past is sent back joined.
 *
 * SECURITY: fail closed. A spend that cannot reach NATS is refused (the service answers
 * InternalError), never decided on this node's file alone; entries from the bucket are
 * validated as operator input (provisioning-rows.ts decodeRow) and a bad one is ignored.
 */
import type { SharedKind, SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';
import type { ClaimRecord, DeviceRecord, OwnershipRecord, ProvisioningStore, RenewalRecord, TokenRecord } from '../provisioning/ports.js';
import {
  canonicalText,
  decodeRow,
  joinRows,
  keyOfRow,
  primaryKey,
  PROVISIONING_ROW_PREFIX,
  rowKey,
  tableOfKey,
  type ProvisioningRow,
  type ProvisioningTable,
} from '../provisioning/provisioning-rows.js';
import type { SqliteProvisioningStore } from '../provisioning/sqlite-provisioning-store.js';

/** How often provisioning.db is checked for other processes' writes (the CLI, other workers). */
const POLL_MS = 250;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function serialKey(serial: string): string {
  return serial.replace(/[:\s]/g, '').toUpperCase();
}

function idOfKey(key: string): string {
  return key.split('.').slice(2).join('.');
}

/** The entries of one node's provisioning.db in the shared state bucket, both ways. */
export class ProvisioningReplica implements SharedKind {
  /** The file's rows as last published or written here, by key. */
  private known = new Map<string, string>();
  /** Device keys are hashes: the identity behind each, for reading the row back. */
  private readonly deviceIds = new Map<string, string>();
  private seenVersion = -1;
  private timer: NodeJS.Timeout | null = null;
  private state: SharedState | null = null;

  constructor(
    readonly local: SqliteProvisioningStore,
    private readonly logger: Logger,
  ) {}

  register(state: SharedState): void {
    this.state = state;
    state.register(PROVISIONING_ROW_PREFIX, this);
  }

  /** After the bucket was read: publishes what only this file holds (or holds newer), then follows the file. */
  attach(): void {
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  // --- SharedKind: entries other nodes wrote ---

  apply(key: string, value: Uint8Array | null): void {
    const table = tableOfKey(key);
    if (value === null) {
      // Only an ownership token is ever deleted (used or expired: forgotten everywhere).
      if (table === 'ownerships') {
        this.local.deleteRow('ownerships', idOfKey(key));
        this.known.delete(key);
      }
      return;
    }
    const incoming = decodeRow(key, value);
    if ('why' in incoming) {
      this.logger.error({ key, why: incoming.why }, 'a provisioning entry from the cluster is malformed; ignored');
      return;
    }
    const here = this.rowOf(incoming);
    const merged = here === null ? incoming : joinRows(here, incoming);
    const text = canonicalText(merged);
    if (here === null || canonicalText(here) !== text) this.local.putRow(merged);
    this.remember(merged, text);
    // This file had moved past the entry (a spend not yet sent, say): the bucket gets the join.
    if (text !== canonicalText(incoming)) this.publish(key);
  }

  // --- this node's changes ---

  /** A row this process just wrote: to the bucket, joined. */
  changed(table: ProvisioningTable, id: string): void {
    const key = rowKey(table, id);
    if (table === 'devices') this.deviceIds.set(key, id);
    const row = this.local.row(table, id);
    if (row === null) {
      this.known.delete(key);
      this.state?.write(key, null);
      return;
    }
    this.remember(row, canonicalText(row));
    this.publish(key);
  }

  /**
   * A "once": `spend` makes the spent row from the current one (the join of the bucket's
   * and this file's), or null when it may not be spent. True only for the node whose
   * compare-and-set wrote the spent row; rejects when NATS does not answer.
   */
  async spendOnce(table: ProvisioningTable, id: string, spend: (current: ProvisioningRow) => ProvisioningRow | null): Promise<boolean> {
    const state = this.state;
    if (state === null) throw new Error('the provisioning replica is not registered');
    const key = rowKey(table, id);
    let spent: ProvisioningRow | null = null;
    const wrote = await state.compareAndSet(key, (current) => {
      spent = null;
      const mine = this.local.row(table, id);
      const theirs = current === null ? null : decodeRow(key, current);
      const base = theirs !== null && !('why' in theirs) ? (mine !== null ? joinRows(theirs, mine) : theirs) : mine;
      if (base === null) return null;
      spent = spend(base);
      return spent === null ? null : Buffer.from(canonicalText(spent));
    });
    if (!wrote || spent === null) return false;
    const row: ProvisioningRow = spent;
    const here = this.local.row(table, id);
    const merged = here === null ? row : joinRows(row, here);
    this.local.putRow(merged);
    this.remember(merged, canonicalText(merged));
    return true;
  }

  private rowOf(r: ProvisioningRow): ProvisioningRow | null {
    return this.local.row(r.table, primaryKey(r));
  }

  private remember(r: ProvisioningRow, text: string): void {
    const key = keyOfRow(r);
    if (r.table === 'devices') this.deviceIds.set(key, r.row.identity);
    this.known.set(key, text);
  }

  /** Writes the join of this file's row and the bucket's entry of `key`, unless the bucket has it already. */
  private publish(key: string): void {
    const table = tableOfKey(key);
    const state = this.state;
    if (table === null || state === null) return;
    const id = table === 'devices' ? this.deviceIds.get(key) : idOfKey(key);
    if (id === undefined) return;
    state
      .compareAndSet(key, (current) => {
        const mine = this.local.row(table, id);
        if (mine === null) return null;
        const theirs = current === null ? null : decodeRow(key, current);
        const joined = theirs !== null && !('why' in theirs) ? joinRows(theirs, mine) : mine;
        const text = canonicalText(joined);
        return theirs !== null && !('why' in theirs) && canonicalText(theirs) === text ? null : Buffer.from(text);
      })
      .catch((err: unknown) => this.logger.error({ key, err: errText(err) }, 'a provisioning record was not shared with the cluster (sent again at the next change or restart)'));
  }

  /** Other processes' writes to the file (the CLI, the other workers of `serve --workers`). */
  private poll(): void {
    try {
      const version = this.local.dataVersion();
      if (version === this.seenVersion) return;
      this.seenVersion = version;
      const now = new Map<string, string>();
      for (const row of this.local.allRows()) {
        const key = keyOfRow(row);
        const text = canonicalText(row);
        now.set(key, text);
        if (row.table === 'devices') this.deviceIds.set(key, row.row.identity);
        if (this.known.get(key) !== text) this.publish(key);
      }
      for (const key of this.known.keys()) if (!now.has(key) && tableOfKey(key) === 'ownerships') this.state?.write(key, null);
      this.known = now;
    } catch (err) {
      this.logger.error({ err: errText(err) }, 'cannot read the provisioning records of this data directory; retrying');
    }
  }
}

/**
 * The ProvisioningStore of a cluster node: reads this node's file (kept in step with the
 * cluster by the replica); writes go to the file and then to the cluster; the "once"
 * operations are decided in the cluster.
 */
export class ClusterProvisioningStore implements ProvisioningStore {
  private readonly local: SqliteProvisioningStore;

  constructor(private readonly replica: ProvisioningReplica) {
    this.local = replica.local;
  }

  addClaim(claim: Omit<ClaimRecord, 'devices' | 'revokedAt'>): void {
    this.local.addClaim(claim);
    this.replica.changed('claims', serialKey(claim.serialNumber));
  }
  claim(serialNumber: string): ClaimRecord | null {
    return this.local.claim(serialNumber);
  }
  listClaims(): ClaimRecord[] {
    return this.local.listClaims();
  }
  revokeClaim(serialNumber: string, at: number): boolean {
    const done = this.local.revokeClaim(serialNumber, at);
    if (done) this.replica.changed('claims', serialKey(serialNumber));
    return done;
  }
  takeClaimSlot(serialNumber: string): Promise<boolean> {
    return this.replica.spendOnce('claims', serialKey(serialNumber), (r) => {
      if (r.table !== 'claims' || r.row.revoked_at !== null || (r.row.max_devices !== 0 && r.row.devices >= r.row.max_devices)) return null;
      return { table: 'claims', row: { ...r.row, devices: r.row.devices + 1 } };
    });
  }

  addToken(token: Omit<TokenRecord, 'usedAt' | 'usedBy'>, secretHash: string): void {
    this.local.addToken(token, secretHash);
    this.replica.changed('tokens', token.id);
  }
  tokenByHash(secretHash: string): TokenRecord | null {
    return this.local.tokenByHash(secretHash);
  }
  token(id: string): TokenRecord | null {
    return this.local.token(id);
  }
  listTokens(): TokenRecord[] {
    return this.local.listTokens();
  }
  spendToken(id: string, identity: string, at: number): Promise<boolean> {
    return this.replica.spendOnce('tokens', id, (r) => {
      if (r.table !== 'tokens' || r.row.used_at !== null || r.row.revoked_at !== null || r.row.expires_at <= at) return null;
      return { table: 'tokens', row: { ...r.row, used_at: at, used_by: identity } };
    });
  }
  revokeToken(id: string, at: number): boolean {
    const done = this.local.revokeToken(id, at);
    if (done) this.replica.changed('tokens', id);
    return done;
  }

  addOwnership(secretHash: string, record: Omit<OwnershipRecord, 'usedAt'>): void {
    this.local.addOwnership(secretHash, record);
    this.replica.changed('ownerships', secretHash);
  }
  ownership(secretHash: string): OwnershipRecord | null {
    return this.local.ownership(secretHash);
  }
  spendOwnership(secretHash: string, at: number): Promise<boolean> {
    return this.replica.spendOnce('ownerships', secretHash, (r) => {
      if (r.table !== 'ownerships' || r.row.used_at !== null || r.row.expires_at <= at) return null;
      return { table: 'ownerships', row: { ...r.row, used_at: at } };
    });
  }
  expiredOwnerships(now: number): Array<OwnershipRecord & { secretHash: string }> {
    return this.local.expiredOwnerships(now);
  }
  forgetOwnership(secretHash: string): void {
    this.local.forgetOwnership(secretHash);
    this.replica.changed('ownerships', secretHash);
  }

  putDevice(device: DeviceRecord): void {
    this.local.putDevice(device);
    this.replica.changed('devices', device.identity);
  }
  device(identity: string): DeviceRecord | null {
    return this.local.device(identity);
  }
  deviceBySerial(serialNumber: string): DeviceRecord | null {
    return this.local.deviceBySerial(serialNumber);
  }
  listDevices(): DeviceRecord[] {
    return this.local.listDevices();
  }

  addRenewal(renewal: Omit<RenewalRecord, 'supersededAt'>): void {
    this.local.addRenewal(renewal);
    this.replica.changed('renewals', serialKey(renewal.newSerial));
  }
  renewalByNewSerial(newSerial: string): RenewalRecord | null {
    return this.local.renewalByNewSerial(newSerial);
  }
  dueRenewals(now: number): RenewalRecord[] {
    return this.local.dueRenewals(now);
  }
  markSuperseded(newSerial: string, at: number): void {
    this.local.markSuperseded(newSerial, at);
    this.replica.changed('renewals', serialKey(newSerial));
  }
  renewalsSince(identity: string, since: number): number {
    return this.local.renewalsSince(identity, since);
  }

  close(): void {
    this.replica.stop();
    this.local.close();
  }
}
