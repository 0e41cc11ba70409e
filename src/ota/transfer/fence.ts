/**
 * Which images a device may fetch over OTA block transfer (issue 14 item 4): exactly the
 * release images of its QUEUED or IN_PROGRESS job executions. Owns: that lookup (the
 * jobs store's pending executions → each job's `document.releaseId` → the release index
 * `<dataDir>/ota/releases.json` → image digest and size) and its caches. Must not:
 * answer devices (transfer-service.ts) or change jobs or releases.
 *
 * SECURITY: the answer is the same "no" whether the image does not exist or is not this
 * device's to fetch, so a device cannot probe which images the broker holds. Job records
 * are read on every request (a canceled or finished job stops the next get at once);
 * only what cannot change is cached: a job's release id (a job's document is fixed) and
 * the release index, re-read when its file changes (looked at once a second, or at once
 * when a job names a release the cached index lacks).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobStore } from '../jobs/ports.js';
import { otaDirOf, RELEASES_FILE } from '../ota-files.js';
import { readReleaseIndex } from '../releases.js';

export interface FencedImage {
  digest: string;
  size: number;
  releaseId: string;
}

/** Job ids remembered (their release id never changes). */
const MAX_CACHED_JOBS = 4096;
/** The release index file is looked at (stat) at most this often. */
const INDEX_CHECK_MS = 1000;

interface IndexCache {
  checkedAt: number;
  /** mtime and size of releases.json when read ('' when there was none). */
  stamp: string;
  byId: Map<string, FencedImage>;
}

export class TransferFence {
  private readonly releasesPath: string;
  private readonly otaDir: string;
  private readonly jobReleases = new Map<string, string | null>();
  private index: IndexCache | null = null;
  private loading: Promise<IndexCache> | null = null;

  constructor(
    private readonly store: JobStore,
    dataDir: string,
    private readonly now: () => number = Date.now,
  ) {
    this.otaDir = otaDirOf(dataDir);
    this.releasesPath = join(this.otaDir, RELEASES_FILE);
  }

  /** The image `digest` if it is the release of a pending execution of `identity`, else null. */
  async imageFor(identity: string, digest: string): Promise<FencedImage | null> {
    const releaseIds = new Set<string>();
    for (const e of this.store.pending(identity)) {
      const r = this.releaseOfJob(e.jobId);
      if (r !== null) releaseIds.add(r);
    }
    if (releaseIds.size === 0) return null;
    let index = await this.releases(false);
    // A job naming a release the cached index lacks: the release may be newer than the cache.
    if ([...releaseIds].some((id) => !index.byId.has(id))) index = await this.releases(true);
    for (const id of releaseIds) {
      const img = index.byId.get(id);
      if (img !== undefined && img.digest === digest) return img;
    }
    return null;
  }

  private releaseOfJob(jobId: string): string | null {
    if (this.jobReleases.has(jobId)) return this.jobReleases.get(jobId)!;
    const job = this.store.job(jobId);
    if (job === null) return null;
    const r = job.document.releaseId;
    const releaseId = typeof r === 'string' ? r : null;
    if (this.jobReleases.size >= MAX_CACHED_JOBS) this.jobReleases.delete(this.jobReleases.keys().next().value!);
    this.jobReleases.set(jobId, releaseId);
    return releaseId;
  }

  private async releases(fresh: boolean): Promise<IndexCache> {
    const cached = this.index;
    if (!fresh && cached !== null && this.now() - cached.checkedAt < INDEX_CHECK_MS) return cached;
    // One look at the file for every request that arrives meanwhile.
    this.loading ??= this.load(cached).finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  private async load(cached: IndexCache | null): Promise<IndexCache> {
    const checkedAt = this.now();
    let stamp = '';
    try {
      const st = await stat(this.releasesPath);
      stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (cached !== null && cached.stamp === stamp) {
      cached.checkedAt = checkedAt;
      return cached;
    }
    const byId = new Map<string, FencedImage>();
    if (stamp !== '') {
      for (const r of (await readReleaseIndex(this.otaDir)).releases) {
        if (typeof r.id === 'string' && typeof r.imageDigest === 'string' && Number.isSafeInteger(r.imageSize) && r.imageSize > 0) byId.set(r.id, { digest: r.imageDigest, size: r.imageSize, releaseId: r.id });
      }
    }
    this.index = { checkedAt, stamp, byId };
    return this.index;
  }
}
