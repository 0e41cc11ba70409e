/**
 * The OTA bench's devices: N `OtaAgent`s, each on its own `BastionDevice` (mutual TLS with
 * a certificate of the broker's PKI, MQTT 5), all in this process, as the device SDK runs
 * them. Each verifies the signed manifest, downloads the image by the block protocol into
 * its own state directory (the agent's `.part` and bitmap files, flushed as on a device),
 * checks the whole image, and installs it by moving the checked file into place
 * (`firmware.bin`, one rename: the image's bytes were written once, block by block).
 * Owns: starting the devices, knowing when each is ready (its jobs subscription answered
 * with `notify-next`), waiting until every device installed a job (or one failed), and the
 * timings of that. Must not: talk to the broker other than through the SDK, or judge images.
 */
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BastionDevice, MemoryIdentityStore, MemoryUpdateStateStore, OtaAgent, UpdateVerifier } from '../src/device/index.js';
import type { FirmwarePublicKey, SignedKeySet } from '../src/firmware/index.js';
import { monoMs } from './ota-telemetry.js';
import type { Pem } from './ota-setup.js';

export interface FleetOptions {
  url: string;
  caPem: string;
  devices: Map<string, Pem>;
  rootKeys: FirmwarePublicKey[];
  keySet: SignedKeySet;
  vendorId: string;
  classId: string;
  /** Each device gets `<dir>/<identity>/`. */
  dir: string;
  /** Deadline for all devices to connect and be subscribed. */
  readyTimeoutMs: number;
}

interface Member {
  id: string;
  device: BastionDevice;
  agent: OtaAgent;
}

/** What one job cost the fleet, on the shared monotonic clock (monoMs). */
export interface JobOutcome {
  ok: boolean;
  error: string | null;
  /** The job's id(s), as the agents saw them (one unless a retry was queued). */
  jobIds: string[];
  installed: number;
  /** Devices whose SUCCEEDED report the broker accepted. */
  reported: number;
  /** The first device taking the job (start-next answered), and the last install. */
  firstJobAtMs: number | null;
  firstBlockAtMs: number | null;
  lastInstalledAtMs: number | null;
  /** Per device, job taken → installed (ms). */
  perDeviceMs: number[];
  blocksWritten: number;
  blocksRefused: number;
  getRequests: number;
  /** Agent errors (requests that timed out, reports refused): should be none. */
  agentErrors: string[];
}

export class OtaFleet {
  private readonly agentErrors: string[] = [];

  private constructor(private readonly members: Member[]) {}

  get size(): number {
    return this.members.length;
  }

  /** Connects every device and starts its agent; resolves when all are subscribed (notify-next seen). */
  static async start(o: FleetOptions): Promise<OtaFleet> {
    const members: Member[] = [];
    const fleet = new OtaFleet(members);
    const ready: Promise<void>[] = [];
    for (const [id, pem] of o.devices) {
      const stateDir = join(o.dir, id, 'ota');
      const firmware = join(o.dir, id, 'firmware.bin');
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      const device = new BastionDevice({
        url: o.url,
        ca: o.caPem,
        store: new MemoryIdentityStore({ identity: id, certPem: pem.cert, keyPem: pem.key }),
        reconnect: { minDelayMs: 100, maxDelayMs: 1_000 },
      });
      const verifier = await UpdateVerifier.open({ rootKeys: o.rootKeys, vendorId: o.vendorId, classId: o.classId, state: new MemoryUpdateStateStore(), initialKeySet: o.keySet });
      const agent = new OtaAgent({ device, verifier, stateDir, install: (imagePath) => rename(imagePath, firmware) });
      agent.on('error', (e) => fleet.agentErrors.push(`${id}: ${e.message}`));
      device.on('error', (e) => fleet.agentErrors.push(`${id} (device): ${e.message}`));
      members.push({ id, device, agent });
      // The broker pushes notify-next when the jobs subscription is made: the agent is listening.
      const notifyTopic = `$bastion/jobs/${id}/notify-next`;
      ready.push(
        new Promise<void>((resolve) => {
          const on = (m: { topic: string }): void => {
            if (m.topic !== notifyTopic) return;
            device.off('message', on);
            resolve();
          };
          device.on('message', on);
        }),
      );
      ready.push(device.connect().then(() => agent.start()));
    }
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the ${members.length} devices were not all connected and subscribed within ${o.readyTimeoutMs} ms`)), o.readyTimeoutMs);
    });
    try {
      await Promise.race([Promise.all(ready), limit]);
    } catch (e) {
      await fleet.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return fleet;
  }

  /** Identities, for `ota job create --clients`. */
  ids(): string[] {
    return this.members.map((m) => m.id);
  }

  /**
   * Waits until every device installed the job of release `version` (resolves ok), one
   * refused or failed it, or `timeoutMs` passed (resolves not ok, with what happened). Call
   * before the job exists: it listens from now on, and learns the job's id from the agents'
   * `job` events (the CLI's output may come after the first device took it).
   */
  watchJob(version: string, timeoutMs: number): { done: Promise<JobOutcome>; cancel: () => void } {
    const n = this.members.length;
    const taken = new Map<string, number>();
    const installedAt = new Map<string, number>();
    let reported = 0;
    let firstBlockAtMs: number | null = null;
    let error: string | null = null;
    const stats0 = this.members.map((m) => ({ ...m.agent.stats }));
    const errors0 = this.agentErrors.length;
    const offs: (() => void)[] = [];
    let finish: () => void = () => undefined;
    const done = new Promise<JobOutcome>((resolve) => {
      const timer = setTimeout(() => {
        error ??= `${installedAt.size} of ${n} devices installed within ${timeoutMs} ms`;
        finish();
      }, timeoutMs);
      finish = (): void => {
        clearTimeout(timer);
        for (const off of offs) off();
        const stats = this.members.map((m, i) => ({ w: m.agent.stats.blocksWritten - stats0[i]!.blocksWritten, r: m.agent.stats.blocksRefused - stats0[i]!.blocksRefused, g: m.agent.stats.getRequests - stats0[i]!.getRequests }));
        const starts = [...taken.values()];
        const ends = [...installedAt.values()];
        resolve({
          ok: error === null && installedAt.size === n && reported === n,
          error: error ?? (reported < n ? `${n - reported} SUCCEEDED report(s) not accepted` : null),
          jobIds: [...jobIds],
          installed: installedAt.size,
          reported,
          firstJobAtMs: starts.length > 0 ? Math.min(...starts) : null,
          firstBlockAtMs,
          lastInstalledAtMs: ends.length > 0 ? Math.max(...ends) : null,
          perDeviceMs: [...installedAt].map(([id, t]) => t - (taken.get(id) ?? t)),
          blocksWritten: stats.reduce((a, s) => a + s.w, 0),
          blocksRefused: stats.reduce((a, s) => a + s.r, 0),
          getRequests: stats.reduce((a, s) => a + s.g, 0),
          agentErrors: this.agentErrors.slice(errors0, errors0 + 10),
        });
      };
    });
    const jobIds = new Set<string>();
    const mine = (jobId: string): boolean => jobIds.has(jobId);
    for (const m of this.members) {
      const onJob = (j: { jobId: string; version: string | undefined }): void => {
        if (j.version !== version) return;
        jobIds.add(j.jobId);
        if (!taken.has(m.id)) taken.set(m.id, monoMs());
      };
      const onProgress = (p: { jobId: string; blocks: number }): void => {
        if (firstBlockAtMs === null && mine(p.jobId) && p.blocks > 0) firstBlockAtMs = monoMs();
      };
      const onInstalled = (i: { jobId: string; reported: boolean }): void => {
        if (!mine(i.jobId) || installedAt.has(m.id)) return;
        installedAt.set(m.id, monoMs());
        if (i.reported) reported++;
        if (installedAt.size === n) finish();
      };
      const onFailed = (f: { jobId: string; reason: string; message: string }): void => {
        if (!mine(f.jobId)) return;
        error ??= `${m.id} failed the job: ${f.reason}: ${f.message}`;
        finish();
      };
      const onRefused = (f: { jobId: string | undefined; reason: string; message: string }): void => {
        if (f.jobId === undefined || !mine(f.jobId)) return;
        error ??= `${m.id} refused: ${f.reason}: ${f.message}`;
        finish();
      };
      const onCanceled = (c: { jobId: string }): void => {
        if (!mine(c.jobId)) return;
        error ??= `${m.id}: the job was canceled or timed out`;
        finish();
      };
      m.agent.on('job', onJob);
      m.agent.on('progress', onProgress);
      m.agent.on('installed', onInstalled);
      m.agent.on('failed', onFailed);
      m.agent.on('refused', onRefused);
      m.agent.on('canceled', onCanceled);
      offs.push(() => {
        m.agent.off('job', onJob);
        m.agent.off('progress', onProgress);
        m.agent.off('installed', onInstalled);
        m.agent.off('failed', onFailed);
        m.agent.off('refused', onRefused);
        m.agent.off('canceled', onCanceled);
      });
    }
    return {
      done,
      cancel: (): void => {
        error ??= 'stopped';
        finish();
      },
    };
  }

  /** Devices whose connection is up now. */
  connected(): number {
    return this.members.filter((m) => m.device.connected).length;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        await m.agent.close().catch(() => undefined);
        await m.device.close().catch(() => undefined);
      }),
    );
  }
}
