/**
 * Notices when files change on disk: fs.watch on their parent directories (which also
 * sees an atomic rename over a file and a Kubernetes `..data` symlink swap), debounced,
 * plus a slow stat poll for filesystems where fs.watch is silent. Owns: the watchers and
 * timers. Must not: decide whether a change matters (the caller compares contents).
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

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

/**
 * Whether a directory event may concern one of `names`: only our files count (the
 * directory may be busy, e.g. the data dir with the database), plus `..`-names, because
 * Kubernetes swaps the `..data` symlink rather than the file; an event without a name
 * (some platforms) counts too.
 */
export function isRelevantChange(names: ReadonlySet<string>, filename: string | null): boolean {
  return filename === null || names.has(filename) || filename.startsWith('..');
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
    const namesByDir = new Map<string, Set<string>>();
    for (const p of paths) {
      const names = namesByDir.get(dirname(p)) ?? new Set<string>();
      names.add(basename(p));
      namesByDir.set(dirname(p), names);
    }
    for (const [dir, names] of namesByDir) {
      const relevant = (_event: string, name: string | Buffer | null): void => {
        if (isRelevantChange(names, name === null ? null : String(name))) fire();
      };
      try {
        const w = watch(dir, { persistent: false }, relevant);
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
