/**
 * An in-memory BanStore for unit tests of the ban list and the automatic bans: the same
 * rules as the SQLite adapter (admin-store.ts), rows kept in an array the tests can read.
 */
import type { Ban, BanFields, BanStore } from '../../src/security/limits/ban-list.js';

export class MemoryBanStore implements BanStore {
  rows: Ban[] = [];
  private nextId = 1;
  listBans(): Ban[] {
    return [...this.rows];
  }
  addBan(ban: BanFields): Ban {
    const row = { ...ban, id: this.nextId++ };
    this.rows.push(row);
    return row;
  }
  removeBan(id: number): boolean {
    const before = this.rows.length;
    this.rows = this.rows.filter((r) => r.id !== id);
    return this.rows.length < before;
  }
  /** As the SQLite adapter: automatic rows are kept longer (their history makes the next ban longer). */
  pruneBans(before: number, autoBefore: number): number {
    const n = this.rows.length;
    this.rows = this.rows.filter((r) => r.expiresAt === null || (r.createdBy.startsWith('auto:') ? r.expiresAt > autoBefore : r.expiresAt > before));
    return n - this.rows.length;
  }
}
