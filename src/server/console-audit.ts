/**
 * The audit log for the admin API (and so the console): records newest first, the chain's
 * verification, and an export in pages. Reads `<dataDir>/audit.db` through a connection of
 * its own beside the writer's (WAL: readers never block it), opened per request so nothing
 * is held between them. Owns: turning stored rows into the API's view. Must not: write to
 * the log or judge the chain (server/audit/verify-chain.ts and security/audit do).
 */
import type { AuditFacade, AuditFilter, AuditRecordView } from '../admin/api/services.js';
import { SqliteAuditStore, type AuditRow } from '../store/sqlite/audit-store.js';
import { auditDbPath } from './audit-side.js';
import { verifyChain } from './audit/verify-chain.js';

/** Rows per page of an export. */
const EXPORT_PAGE = 2000;

function view(row: AuditRow): AuditRecordView {
  let event: unknown;
  try {
    event = JSON.parse(row.eventJson) as unknown;
  } catch {
    // What is stored is hashed as stored: show it as text rather than hide it.
    event = row.eventJson;
  }
  return { seq: row.seq, ts: row.ts, type: row.type, clientId: row.clientId, event };
}

export class ConsoleAudit implements AuditFacade {
  /**
   * @param flush writes what the audit writer still holds (the aggregation window and its
   * batch), so a page shows what just happened.
   */
  constructor(
    private readonly dataDir: string,
    private readonly flush: () => void,
  ) {}

  private with<T>(work: (store: SqliteAuditStore) => T): T {
    this.flush();
    const store = SqliteAuditStore.open(auditDbPath(this.dataDir), { create: false });
    try {
      return work(store);
    } finally {
      store.close();
    }
  }

  query(f: AuditFilter): AuditRecordView[] {
    return this.with((store) => store.query({ since: f.since, until: f.until, type: f.type, clientId: f.clientId, beforeSeq: f.beforeSeq, newestFirst: true, limit: f.limit }).map(view));
  }

  async verify(): Promise<object> {
    this.flush();
    const { result, trustAnchor } = await verifyChain(this.dataDir, false);
    return { ...result, trustAnchor: trustAnchor !== null };
  }

  async exportPages(f: Omit<AuditFilter, 'limit' | 'beforeSeq'>, page: (rows: AuditRecordView[]) => Promise<void>): Promise<void> {
    this.flush();
    const store = SqliteAuditStore.open(auditDbPath(this.dataDir), { create: false });
    try {
      let after = 0;
      for (;;) {
        const rows = store.query({ since: f.since, until: f.until, type: f.type, clientId: f.clientId, afterSeq: after, limit: EXPORT_PAGE });
        if (rows.length === 0) return;
        await page(rows.map(view));
        after = rows[rows.length - 1]!.seq;
        if (rows.length < EXPORT_PAGE) return;
      }
    } finally {
      store.close();
    }
  }
}
