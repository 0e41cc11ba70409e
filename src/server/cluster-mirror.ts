/**
 * One kind of rows kept in step between this node's own SQLite file and the cluster's
 * shared state bucket (issue 12): rows the admin API or the CLI change in the file are
 * published as entries, and entries other nodes publish are written into the file. Used
 * for the ACL roles and bindings (authz.db) and the password users (users.db), so the
 * broker, `bastion acl` and `bastion user` keep working on the node's own files. Owns: the
 * diff between the file and the bucket, and who wins at start. Must not: know what a row
 * means (the LocalRows adapter in cluster-acl.ts / cluster-users.ts does) or talk to NATS
 * itself (cluster/shared-state.ts does).
 *
 * At start (after the bucket was read): a key the bucket holds is the bucket's value, one
 * the bucket deleted is deleted here, and one the bucket never had is published (turning
 * cluster mode on keeps a node's rows). Afterwards the last change wins, wherever made.
 *
 * SECURITY: every entry from the bucket goes through the adapter's validation before it
 * reaches the file; one that fails is logged and ignored (the file keeps its row).
 */
import type { Logger } from '../core/logger.js';
import type { SharedKind, SharedState } from '../cluster/shared-state.js';

/** The rows of one kind in this node's file, as bucket entries. */
export interface LocalRows {
  /** Every row: its bucket key and its canonical entry text. */
  snapshot(): Map<string, string>;
  /** Validates an entry from the bucket: its canonical text, or why it is refused. */
  check(key: string, value: Uint8Array): { text: string } | { why: string };
  /** Writes a checked entry into the file. */
  write(key: string, text: string): void;
  /** Removes the row of `key` (`row`: its current canonical text) from the file. */
  remove(key: string, row: string): void;
}

export class MirroredKind implements SharedKind {
  /** The bucket's entries (null: deleted) as this node read them. */
  private readonly bucket = new Map<string, string | null>();
  /** The file's rows as last synced. */
  private known = new Map<string, string>();
  private attached = false;
  private changed = false;

  constructor(
    private readonly state: SharedState,
    private readonly what: string,
    private readonly rows: LocalRows,
    private readonly logger: Logger,
    /** After entries from the bucket changed the file (the PolicyService reloads). */
    private readonly onApplied: () => void = () => {},
  ) {}

  apply(key: string, value: Uint8Array | null): void {
    if (value === null) {
      this.bucket.set(key, null);
    } else {
      const checked = this.rows.check(key, value);
      if ('why' in checked) {
        this.logger.error({ key, why: checked.why }, `${this.what} entry from the cluster is malformed; ignored`);
        return;
      }
      this.bucket.set(key, checked.text);
    }
    if (this.attached) this.mirror(key);
  }

  settled(): void {
    if (!this.changed) return;
    this.changed = false;
    this.onApplied();
  }

  /** After the bucket was read: reconciles the file with it, then follows both. */
  attach(): void {
    const local = this.rows.snapshot();
    for (const [key, text] of local) {
      if (!this.bucket.has(key)) this.publish(key, text);
    }
    for (const key of this.bucket.keys()) this.mirror(key, local);
    this.known = this.rows.snapshot();
    this.attached = true;
    if (this.changed) this.settled();
  }

  /** The file may have changed (the admin API, the CLI): its changes go to the bucket. */
  sync(): void {
    if (!this.attached) return;
    const now = this.rows.snapshot();
    for (const [key, text] of now) if (this.known.get(key) !== text) this.publish(key, text);
    for (const key of this.known.keys()) {
      if (now.has(key)) continue;
      this.bucket.set(key, null);
      this.state.write(key, null);
    }
    this.known = now;
  }

  private publish(key: string, text: string): void {
    this.bucket.set(key, text);
    this.state.write(key, Buffer.from(text));
  }

  /** Makes the file show the bucket's entry of `key`. */
  private mirror(key: string, local: Map<string, string> = this.rows.snapshot()): void {
    const want = this.bucket.get(key) ?? null;
    const have = local.get(key) ?? null;
    if (want === have) return;
    try {
      if (want === null) this.rows.remove(key, have!);
      else this.rows.write(key, want);
    } catch (err) {
      this.logger.error({ key, err: err instanceof Error ? err.message : String(err) }, `${this.what} entry from the cluster could not be written here`);
      return;
    }
    // What the file shows now (users.db keeps a user's creation time): not a change of ours to send.
    const now = this.rows.snapshot().get(key);
    if (now === undefined) this.known.delete(key);
    else this.known.set(key, now);
    this.changed = true;
    this.logger.info({ key, removed: want === null }, `${this.what} changed by another node of the cluster`);
  }
}
