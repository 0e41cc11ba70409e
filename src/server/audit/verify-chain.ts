/**
 * Verifying the audit log of one data directory: its records, checkpoints, pruning markers
 * and signers, read in one snapshot, judged by security/audit/verify.ts, with the node id
 * the chain names. Shared by `bastion audit verify` and the admin API's chain status.
 * Owns: reading the chain and naming its node. Must not: judge records itself or write.
 *
 * SECURITY: with a built-in PKI, the signers must chain to its root (a signer written into
 * audit.db by whoever rewrote the log is not trusted just for being there).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pkiDirOf, pkiLayout } from '../pki-layout.js';
import type { AuditVerifyResult } from '../../security/audit/verify.js';
import type { AuditRow } from '../../store/sqlite/audit-store.js';

export interface ChainReport {
  dataDir: string;
  /** The node id the newest record names; null for a single broker's log (or an empty one). */
  node: string | null;
  /** The node id the oldest kept record names, when it differs from `node`. */
  earlierNode: string | null;
  result: AuditVerifyResult;
  /** The PKI root the signers had to chain to, or null (self-signed signers allowed). */
  trustAnchor: string | null;
}

/** The node a stored record names (a cluster node's writer adds it to every event). */
function nodeOf(row: AuditRow | undefined): string | null {
  if (row === undefined) return null;
  try {
    const event = JSON.parse(row.eventJson) as { node?: unknown };
    return typeof event.node === 'string' ? event.node : null;
  } catch {
    return null;
  }
}

/** Verifies the audit log of `dataDir` (throws a BastionError when there is none). */
export async function verifyChain(dataDir: string, strict: boolean): Promise<ChainReport> {
  const { verifyAuditLog } = await import('../../security/audit/verify.js');
  const { HYBRID_SIGNATURES } = await import('../../pki/hybrid-signature.js');
  const { SqliteAuditStore, AUDIT_DB_FILE } = await import('../../store/sqlite/audit-store.js');
  const store = SqliteAuditStore.open(join(dataDir, AUDIT_DB_FILE), { create: false });
  try {
    const rootCert = pkiLayout(pkiDirOf(dataDir)).rootCert;
    // SECURITY: with a built-in PKI, the signer must chain to its root: a signer written
    // into audit.db by whoever rewrote the log is not trusted just for being there.
    const trustAnchorPem = existsSync(rootCert) ? readFileSync(rootCert, 'utf8') : undefined;
    // One snapshot: a checkpoint signed or a batch pruned by the running broker meanwhile
    // can then never look like a cut tail or a gap without a pruning checkpoint.
    return store.readSnapshot(() => {
      const result = verifyAuditLog({
        records: store.all(),
        checkpoints: store.checkpoints(),
        pruned: store.pruned(),
        signers: store.signers(),
        pqKeys: store.pqKeys(),
        hybrid: HYBRID_SIGNATURES,
        trustAnchorPem,
        recordWithHash: (h) => store.withHash(h),
        strict,
      });
      const node = nodeOf(store.tail(1)[0]);
      const oldest = nodeOf(store.query({ limit: 1 })[0]);
      return { dataDir, node, earlierNode: oldest !== node ? oldest : null, result, trustAnchor: trustAnchorPem !== undefined ? rootCert : null };
    });
  } finally {
    store.close();
  }
}

