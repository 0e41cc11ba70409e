/**
 * TLS session ticket keys shared through a file. Owns: the 48-byte key Node encrypts
 * session tickets with, its rotation schedule and the key file (mode 0600, written
 * atomically). Several broker processes that point at the same file accept each other's
 * tickets. Must not: touch TLS servers (the context manager applies the key).
 *
 * SECURITY: whoever reads the key file can decrypt recorded TLS 1.2 resumptions and
 * forge tickets, so it is created 0600 and rotated (default every 12 hours).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import type { Logger } from '../core/logger.js';

/** Node's ticket key: 16 bytes name, 16 bytes HMAC secret, 16 bytes AES key. */
export const TICKET_KEY_BYTES = 48;

interface StoredKey {
  createdAt: number;
  key: Buffer;
}

function parseKeyFile(text: string): StoredKey | null {
  const m = /^bastion-ticket-key v1 (\d+) ([0-9a-f]{96})\s*$/.exec(text);
  if (m === null) return null;
  return { createdAt: Number(m[1]), key: Buffer.from(m[2]!, 'hex') };
}

function tempPath(file: string): string {
  return `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

export class TicketKeyStore {
  /** The stores `shared()` handed out in this process, by file, with how many holders each has. */
  private static readonly byFile = new Map<string, { store: TicketKeyStore; holders: number }>();
  private current: StoredKey;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(key: Buffer) => void>();
  private sharedHolders = false;

  private constructor(
    readonly file: string,
    private rotateMs: number,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {
    this.current = this.readOrCreate();
    this.schedule();
  }

  /** A store of its own over `file` (another process's view, in tests). */
  static open(file: string, rotateHours: number, logger: Logger, now: () => number = Date.now): TicketKeyStore {
    return new TicketKeyStore(file, rotateHours * 3_600_000, logger, now);
  }

  /**
   * The one store of this process over `file`, shared by its holders (every listener on
   * the file, the cluster's ticket key kind), so a key one of them installs reaches the
   * others' TLS servers at once and the file is rotated once. The shortest period asked
   * for applies. Each holder calls `close()` once; the last one stops it.
   */
  static shared(file: string, rotateHours: number, logger: Logger): TicketKeyStore {
    const held = TicketKeyStore.byFile.get(file);
    if (held !== undefined) {
      held.holders++;
      const rotateMs = rotateHours * 3_600_000;
      if (rotateMs < held.store.rotateMs) {
        held.store.rotateMs = rotateMs;
        held.store.schedule();
      }
      return held.store;
    }
    const store = new TicketKeyStore(file, rotateHours * 3_600_000, logger, Date.now);
    store.sharedHolders = true;
    TicketKeyStore.byFile.set(file, { store, holders: 1 });
    return store;
  }

  get key(): Buffer {
    return this.current.key;
  }

  /** When the current key was made (ms since the epoch); rotation counts from here. */
  get createdAt(): number {
    return this.current.createdAt;
  }

  /**
   * Makes `key` (made at `createdAt`, by another node of a cluster) the current key: the
   * file is replaced atomically, so every process on it adopts the key too. No-op when it
   * is the current key already.
   */
  install(createdAt: number, key: Buffer): void {
    if (key.length !== TICKET_KEY_BYTES) throw new Error(`a ticket key has ${TICKET_KEY_BYTES} bytes, not ${key.length}`);
    if (key.equals(this.current.key)) return;
    const stored: StoredKey = { createdAt, key: Buffer.from(key) };
    renameSync(this.writeTemp(stored), this.file);
    this.adopt(stored);
  }

  /** Called with the new key whenever it changes (rotation here or in another process); returns the unsubscribe. */
  onChange(cb: (key: Buffer) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Re-reads the file (another process may have rotated it); true when the key changed. */
  refresh(): boolean {
    const stored = this.read();
    if (stored === null || stored.key.equals(this.current.key)) return false;
    this.adopt(stored);
    return true;
  }

  /** Replaces the key now if it is older than the rotation period. */
  rotateIfDue(): void {
    this.refresh();
    if (this.now() - this.current.createdAt < this.rotateMs) return;
    const fresh: StoredKey = { createdAt: this.now(), key: randomBytes(TICKET_KEY_BYTES) };
    const tmp = this.writeTemp(fresh);
    renameSync(tmp, this.file);
    this.logger.info({ file: this.file }, 'TLS session ticket key rotated');
    this.adopt(fresh);
  }

  close(): void {
    if (this.sharedHolders) {
      const held = TicketKeyStore.byFile.get(this.file);
      if (held !== undefined && --held.holders > 0) return;
      TicketKeyStore.byFile.delete(this.file);
    }
    clearTimeout(this.timer);
  }

  private adopt(stored: StoredKey): void {
    this.current = stored;
    this.schedule();
    for (const cb of [...this.listeners]) cb(stored.key);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    const due = Math.max(1000, this.current.createdAt + this.rotateMs - this.now());
    // setTimeout holds 32-bit milliseconds; a long period is re-checked, not overflowed.
    this.timer = setTimeout(() => {
      try {
        this.rotateIfDue();
      } catch (err) {
        this.logger.error({ file: this.file, err: (err as Error).message }, 'TLS session ticket key rotation failed; the old key stays');
      }
      this.schedule();
    }, Math.min(due, 2 ** 31 - 1));
    this.timer.unref();
  }

  private read(): StoredKey | null {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return null;
    }
    return parseKeyFile(text);
  }

  private writeTemp(stored: StoredKey): string {
    const tmp = tempPath(this.file);
    writeFileSync(tmp, `bastion-ticket-key v1 ${stored.createdAt} ${stored.key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    return tmp;
  }

  private readOrCreate(): StoredKey {
    const existing = this.read();
    if (existing !== null) return existing;
    const fresh: StoredKey = { createdAt: this.now(), key: randomBytes(TICKET_KEY_BYTES) };
    const tmp = this.writeTemp(fresh);
    try {
      // link() fails when the file exists: of two processes starting together, one key wins
      // and the other adopts it, so both accept the same tickets from the start.
      linkSync(tmp, this.file);
      return fresh;
    } catch {
      const winner = this.read();
      if (winner !== null) return winner;
      // The file exists but is not ours to parse (corrupt): replace it.
      this.logger.warn({ file: this.file }, 'TLS session ticket key file unreadable; writing a new key');
      renameSync(tmp, this.file);
      return fresh;
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        /* renamed away */
      }
    }
  }
}
