/**
 * Device provisioning across the nodes of a cluster (issue 13): every node keeps its own
 * provisioning.db, and every row of it (claims, one-time tokens, ownership tokens, devices,
 * renewals) is also an entry `prov.<table>.<id>` of the shared state bucket. So a token
 * made with `bastion provision token create` on one machine works on any node, once; a
 * device provisioned on one node renews on another; and the first use of a renewed
 * certificate on any node supersedes the old one. Owns: how provisioning.db's rows are
 * replicated (a RowKind for cluster-rows.ts, which does entries in, rows out and the poll
 * for other processes' writes) and the store every node's provisioning service uses in
 * cluster mode. Must not: decide anything about provisioning (src/provisioning/ does) or
 * talk to NATS except through SharedState.
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
import type { Logger } from '../core/logger.js';
import type { ClaimRecord, DeviceRecord, OwnershipRecord, ProvisioningStore, RenewalRecord, TokenRecord } from '../provisioning/ports.js';
import {
  canonicalText,
  decodeRow,
  joinRows,
  keyOfRow,
  primaryKey,
  PROVISIONING_ROW_PREFIX,
  type ProvisioningRow,
  type ProvisioningTable,
} from '../provisioning/provisioning-rows.js';
import type { SqliteProvisioningStore } from '../provisioning/sqlite-provisioning-store.js';
import { normalizeSerial } from '../store/sqlite/pki-inventory.js';
import { RowReplica } from './cluster-rows.js';

/** provisioning.db's rows as the shared state's `prov.*` entries (cluster-rows.ts does the replicating). */
export type ProvisioningReplica = RowReplica<ProvisioningRow>;

export function provisioningReplica(local: SqliteProvisioningStore, logger: Logger): ProvisioningReplica {
  return new RowReplica<ProvisioningRow>(
    {
      prefix: PROVISIONING_ROW_PREFIX,
      what: 'provisioning records',
      decode: decodeRow,
      keyOf: keyOfRow,
      text: canonicalText,
      join: joinRows,
      read: (like) => local.row(like.table, primaryKey(like)),
      put: (r) => (local.putRow(r), true),
      all: () => local.allRows(),
      dataVersion: () => local.dataVersion(),
    },
    logger,
  );
}

/**
 * The ProvisioningStore of a cluster node: reads this node's file (kept in step with the
 * cluster by the replica); writes go to the file and then to the cluster; the "once"
 * operations are decided in the cluster.
 */
export class ClusterProvisioningStore implements ProvisioningStore {
  constructor(
    private readonly local: SqliteProvisioningStore,
    private readonly replica: ProvisioningReplica,
  ) {}

  /** A row this process just wrote: to the bucket, joined with its entry there. */
  private changed(table: ProvisioningTable, id: string): void {
    const row = this.local.row(table, id);
    if (row !== null) this.replica.put(row);
  }

  /**
   * A "once": `spend` makes the spent row from the current one (the join of the bucket's
   * entry and this file's row), or null when it may not be spent. True only for the node
   * whose compare-and-set wrote the spent row; rejects when NATS does not answer.
   */
  private async spendOnce(table: ProvisioningTable, id: string, spend: (current: ProvisioningRow) => ProvisioningRow | null): Promise<boolean> {
    const like = this.local.row(table, id);
    if (like === null) return false;
    return (await this.replica.update(like, spend)) !== null;
  }

  addClaim(claim: Omit<ClaimRecord, 'devices' | 'revokedAt'>): void {
    this.local.addClaim(claim);
    this.changed('claims', normalizeSerial(claim.serialNumber));
  }
  claim(serialNumber: string): ClaimRecord | null {
    return this.local.claim(serialNumber);
  }
  listClaims(): ClaimRecord[] {
    return this.local.listClaims();
  }
  revokeClaim(serialNumber: string, at: number): boolean {
    const done = this.local.revokeClaim(serialNumber, at);
    if (done) this.changed('claims', normalizeSerial(serialNumber));
    return done;
  }
  takeClaimSlot(serialNumber: string): Promise<boolean> {
    return this.spendOnce('claims', normalizeSerial(serialNumber), (r) => {
      if (r.table !== 'claims' || r.row.revoked_at !== null || (r.row.max_devices !== 0 && r.row.devices >= r.row.max_devices)) return null;
      return { table: 'claims', row: { ...r.row, devices: r.row.devices + 1 } };
    });
  }

  addToken(token: Omit<TokenRecord, 'usedAt' | 'usedBy'>, secretHash: string): void {
    this.local.addToken(token, secretHash);
    this.changed('tokens', token.id);
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
    return this.spendOnce('tokens', id, (r) => {
      if (r.table !== 'tokens' || r.row.used_at !== null || r.row.revoked_at !== null || r.row.expires_at <= at) return null;
      return { table: 'tokens', row: { ...r.row, used_at: at, used_by: identity } };
    });
  }
  revokeToken(id: string, at: number): boolean {
    const done = this.local.revokeToken(id, at);
    if (done) this.changed('tokens', id);
    return done;
  }

  addOwnership(secretHash: string, record: Omit<OwnershipRecord, 'usedAt'>): void {
    this.local.addOwnership(secretHash, record);
    this.changed('ownerships', secretHash);
  }
  ownership(secretHash: string): OwnershipRecord | null {
    return this.local.ownership(secretHash);
  }
  spendOwnership(secretHash: string, at: number): Promise<boolean> {
    return this.spendOnce('ownerships', secretHash, (r) => {
      if (r.table !== 'ownerships' || r.row.used_at !== null || r.row.expires_at <= at) return null;
      return { table: 'ownerships', row: { ...r.row, used_at: at } };
    });
  }
  expiredOwnerships(now: number): Array<OwnershipRecord & { secretHash: string }> {
    return this.local.expiredOwnerships(now);
  }
  /**
   * In a cluster an expired ownership token is marked used, not deleted: the shared rows are
   * never deleted (a deletion could not be told from a row another node has not yet sent),
   * and a used row is no longer listed by expiredOwnerships.
   */
  forgetOwnership(secretHash: string): void {
    const row = this.local.row('ownerships', secretHash);
    if (row === null || row.table !== 'ownerships' || row.row.used_at !== null) return;
    this.replica.put({ table: 'ownerships', row: { ...row.row, used_at: row.row.expires_at } });
  }

  putDevice(device: DeviceRecord): void {
    this.local.putDevice(device);
    this.changed('devices', device.identity);
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
    this.changed('renewals', normalizeSerial(renewal.newSerial));
  }
  renewalByNewSerial(newSerial: string): RenewalRecord | null {
    return this.local.renewalByNewSerial(newSerial);
  }
  dueRenewals(now: number): RenewalRecord[] {
    return this.local.dueRenewals(now);
  }
  markSuperseded(newSerial: string, at: number): void {
    this.local.markSuperseded(newSerial, at);
    this.changed('renewals', normalizeSerial(newSerial));
  }
  renewalsSince(identity: string, since: number): number {
    return this.local.renewalsSince(identity, since);
  }

  close(): void {
    this.replica.stop();
    this.local.close();
  }
}
