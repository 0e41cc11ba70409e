/**
 * Notices when files change on disk: fs.watch on their parent directories (which also
 * sees an atomic rename over a file and a Kubernetes `..data` symlink swap), debounced,
 * plus a slow stat poll for filesystems where fs.watch is silent. Owns: the watchers and
 * timers. Must not: decide whether a change matters (the caller compares contents).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

export interface WatchOptions {
  debounceMs?: number;
  pollMs?: number;
  onWatchError?: (dir: string, err: Error) => void;
}

function statKey(path: string): string {
  try {
    // stat follows symlinks, so a swapped `..data` link changes the inode seen here.
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

export class FileChangeWatcher {
  private readonly watchers: FSWatcher[] = [];
  private readonly poller: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | undefined;
  private readonly stats = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly paths: readonly string[],
    private readonly onChange: () => void,
    opts: WatchOptions = {},
  ) {
    const debounceMs = opts.debounceMs ?? 100;
    const fire = (): void => {
      if (this.closed) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => {
        if (!this.closed) this.onChange();
      }, debounceMs);
      this.debounce.unref();
    };
    for (const p of paths) this.stats.set(p, statKey(p));
    for (const dir of new Set(paths.map((p) => dirname(p)))) {
      try {
        const w = watch(dir, { persistent: false }, fire);
        w.on('error', (err) => opts.onWatchError?.(dir, err));
        this.watchers.push(w);
      } catch (err) {
        opts.onWatchError?.(dir, err as Error);
      }
    }
    this.poller = setInterval(() => {
      let changed = false;
      for (const p of this.paths) {
        const key = statKey(p);
        if (this.stats.get(p) !== key) changed = true;
        this.stats.set(p, key);
      }
      if (changed) fire();
    }, opts.pollMs ?? 10_000);
    this.poller.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.poller);
    for (const w of this.watchers) w.close();
  }
}
