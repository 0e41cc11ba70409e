/**
 * `OtaAgent`: the device's OTA loop over a connected `BastionDevice` (docs/OTA.md "Device
 * agent"). It follows `$bastion/jobs/<identity>/notify-next`, takes the next execution with
 * `start-next`, checks the signed manifest with the `UpdateVerifier` BEFORE downloading,
 * downloads the image by the block protocol into `<stateDir>` (resumable, ota-download.ts),
 * checks the whole image against the manifest, hands it to the application's `install`
 * (the bootloader), raises the installed sequence, and reports every outcome on the job.
 * Owns: that order, the job reports and the events. Must not: install anything itself,
 * weaken a check of the verifier, or import anything of the broker.
 *
 * SECURITY:
 * - Nothing is downloaded for a manifest the verifier refuses (signature, key set, vendor,
 *   class, sequence, validity): the refusal is reported as REJECTED with its reason.
 * - `install` gets only an image whose size and SHA-256 match the signed manifest;
 *   `markInstalled` runs after `install` resolved, so a crash between them re-offers the
 *   same sequence rather than refusing a good image.
 * - Event handlers never throw into the device: failures are reported on the job, as
 *   events, or (unattached to a job) on 'error' when listened to.
 */
import { EventEmitter } from 'node:events';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Manifest, RefusalReason } from '../firmware/index.js';
import type { BastionDevice, DeviceMessage } from './device.js';
import { DeviceError } from './errors.js';
import type { OtaAgentEvents, OtaAgentOptions, OtaAgentStats, OtaFailureReason } from './ota-agent-types.js';
import { filesFilter, filesPrefix, isValidBlockSize, parseBlock, transferTopicOf, type BlockRefusal } from './ota-blocks.js';
import { BlockDownload } from './ota-download.js';
import { discardOtherDownloads, DownloadFiles } from './ota-download-state.js';
import { readInstallRecord, signedBytesOf, writeInstallRecord } from './ota-install-record.js';
import { details, JobsClient, jobsFilter, notifyNextTopicOf, parseNotifyNext, type JobExecution, type TerminalStatus } from './ota-jobs-client.js';
import { TokenRequests } from './ota-requests.js';
import { jsonObjectOf } from './protocol.js';

export type { OtaAgentEvents, OtaAgentOptions, OtaAgentStats, OtaFailureReason, OtaJobInfo } from './ota-agent-types.js';

interface Session {
  aborted: boolean;
  /** The terminal report is under way: the notify-next it causes is not a cancellation. */
  finishing: boolean;
  execution: JobExecution | null;
  download: BlockDownload | null;
  /** Progress updates, one after another (each needs the version the previous one made). */
  updates: Promise<void>;
}

const RETRY_AFTER_ERROR_MS = 5_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class OtaAgent extends EventEmitter<OtaAgentEvents> {
  readonly stats: OtaAgentStats = { blocksWritten: 0, blocksRefused: 0, getRequests: 0 };
  private readonly device: BastionDevice;
  private readonly requests: TokenRequests;
  private identity: string | undefined;
  private ready = false;
  private started = false;
  private closed = false;
  private wanted = false;
  private loop: Promise<void> | null = null;
  private current: Session | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Bumped by each connection: a subscription finishing for an older one does nothing. */
  private connection = 0;

  private readonly onMessage = (m: DeviceMessage): void => this.guard(() => this.message(m));
  private readonly onConnected = (): void => this.guard(() => this.connectedNow());
  private readonly onDisconnected = (): void => this.guard(() => this.lost());

  constructor(private readonly options: OtaAgentOptions) {
    super();
    if (options.blockSize !== undefined && !isValidBlockSize(options.blockSize)) {
      throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `blockSize ${options.blockSize} is not a multiple of 256 from 256 to 131072`);
    }
    this.device = options.device;
    this.requests = new TokenRequests(options.device);
  }

  /** Subscribes and starts following jobs (now when connected, else at the connection). */
  async start(): Promise<void> {
    if (this.closed) throw new DeviceError('ERR_DEVICE_CLOSED', 'the OTA agent was closed');
    if (this.started) return;
    this.started = true;
    this.device.on('message', this.onMessage);
    this.device.on('connected', this.onConnected);
    this.device.on('disconnected', this.onDisconnected);
    if (this.device.connected) await this.connectedNow();
  }

  /** Stops everything: the download is suspended (resumable), requests fail, listeners go. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    clearTimeout(this.retryTimer);
    this.device.off('message', this.onMessage);
    this.device.off('connected', this.onConnected);
    this.device.off('disconnected', this.onDisconnected);
    if (this.current !== null) this.abort(this.current);
    this.requests.failAll(new DeviceError('ERR_DEVICE_CLOSED', 'the OTA agent was closed'));
    await this.loop;
    // Offline, this only forgets them (not made again at the next connection).
    if (this.identity !== undefined) {
      for (const f of [jobsFilter(this.identity), filesFilter(this.identity)]) await this.device.unsubscribe(f).catch(() => undefined);
    }
  }

  private guard(fn: () => unknown): void {
    try {
      const r = fn();
      if (r instanceof Promise) r.catch((err: unknown) => this.emitError(err));
    } catch (err) {
      this.emitError(err);
    }
  }

  private emitError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }

  private async connectedNow(): Promise<void> {
    if (this.closed) return;
    const id = this.device.identity;
    if (id === undefined) return;
    const connection = ++this.connection;
    this.identity = id;
    this.ready = false;
    // Subscribed again on this connection and acknowledged BEFORE any request: the broker
    // answers only on topics the requester subscribed to. Files first: the jobs
    // subscription makes the broker push notify-next, which starts the work.
    await this.device.subscribe(filesFilter(id), { qos: 1 });
    await this.device.subscribe(jobsFilter(id), { qos: 1 });
    if (this.closed || connection !== this.connection || !this.device.connected) return;
    this.ready = true;
    this.kick();
  }

  private lost(): void {
    this.connection++;
    this.ready = false;
    if (this.current !== null) this.abort(this.current);
    this.requests.failAll(new DeviceError('ERR_DEVICE_CONNECTION', 'the connection was lost'));
  }

  private abort(s: Session): void {
    s.aborted = true;
    s.download?.abort();
  }

  private message(m: DeviceMessage): void {
    const id = this.identity;
    if (id === undefined || this.closed) return;
    if (m.topic === notifyNextTopicOf(id)) {
      this.notifyNext(m.payload);
      return;
    }
    if (this.requests.deliver(m.topic, m.payload)) return;
    const t = transferTopicOf(id, m.topic);
    if (t === null) return;
    const download = this.current?.aborted === false ? this.current.download : null;
    if (t.kind === 'data') {
      // Blocks that arrive with no download under way (late ones of a finished or stopped
      // one) are dropped: nothing asked for them.
      if (download === null) return;
      const p = parseBlock(m.payload);
      if (!p.ok) {
        this.refused(this.current?.execution?.jobId, 'MalformedBlock', p.message);
        return;
      }
      download.onData(p.block);
    } else if (t.kind === 'rejected' && download !== null) {
      const body = jsonObjectOf(m.payload);
      if (body !== null) download.onRejected(body);
    }
  }

  private refused(jobId: string | undefined, reason: RefusalReason | BlockRefusal | 'Malformed', message: string): void {
    if (reason === 'MalformedBlock' || reason === 'ForeignImage' || reason === 'WrongBlockSize' || reason === 'UnexpectedBlock' || reason === 'BadBlockLength') this.stats.blocksRefused++;
    this.emit('refused', { jobId, reason, message });
  }

  private notifyNext(payload: Buffer): void {
    const next = parseNotifyNext(payload);
    if (next === undefined) return;
    const s = this.current;
    if (s !== null && s.execution !== null && !s.finishing && !s.aborted) {
      const e = s.execution;
      if (next !== null && next.jobId === e.jobId && next.executionNumber === e.executionNumber) return;
      // What this device works on is no longer its next execution: canceled, or timed out.
      this.abort(s);
      this.emit('canceled', { jobId: e.jobId, executionNumber: e.executionNumber });
    }
    if (next !== null) this.kick();
  }

  /** Asks for the next execution once the current one is done (requests coalesce). */
  private kick(): void {
    if (this.closed) return;
    this.wanted = true;
    if (this.loop !== null || !this.ready) return;
    this.loop = (async () => {
      while (this.wanted && this.ready && !this.closed) {
        this.wanted = false;
        await this.runOnce();
      }
    })().finally(() => {
      this.loop = null;
      if (this.wanted && this.ready && !this.closed) this.kick();
    });
  }

  private async runOnce(): Promise<void> {
    const s: Session = { aborted: false, finishing: false, execution: null, download: null, updates: Promise.resolve() };
    this.current = s;
    try {
      const jobs = new JobsClient(this.requests, this.identity!, this.options.requestTimeoutMs);
      const e = await jobs.startNext();
      if (e === null || s.aborted) return;
      s.execution = e;
      await this.process(s, jobs, e);
    } catch (err) {
      if (s.aborted || this.closed || !this.ready) return;
      this.emitError(err);
      // A request that timed out while connected: try again a little later.
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.kick(), RETRY_AFTER_ERROR_MS);
      this.retryTimer.unref();
    } finally {
      await s.updates;
      if (this.current === s) this.current = null;
    }
  }

  private async process(s: Session, jobs: JobsClient, e: JobExecution): Promise<void> {
    const doc = e.jobDocument ?? {};
    this.emit('job', { jobId: e.jobId, executionNumber: e.executionNumber, releaseId: typeof doc.releaseId === 'string' ? doc.releaseId : undefined, version: typeof doc.version === 'string' ? doc.version : undefined });
    const envelope = doc.manifest;
    if (envelope === undefined) {
      s.finishing = true;
      await this.report(s, jobs, e, 'REJECTED', { reason: 'Malformed', message: 'the job document has no manifest' });
      this.refused(e.jobId, 'Malformed', 'the job document has no manifest');
      return;
    }
    // Installed already, and the report was lost (a crash or a disconnect after install)?
    const last = await readInstallRecord(this.options.stateDir);
    const bytes = signedBytesOf(envelope);
    if (last !== null && last.jobId === e.jobId && bytes !== null && last.manifest === bytes && last.sequence === this.options.verifier.lastSequence) {
      s.finishing = true;
      const r = await this.report(s, jobs, e, 'SUCCEEDED', { sequence: last.sequence, version: last.version, note: 'installed before the report' });
      if (r !== 'lost') this.emit('installed', { jobId: e.jobId, version: last.version, sequence: last.sequence, imageDigest: last.imageDigest, reported: r === 'accepted' });
      return;
    }
    // SECURITY: the manifest is checked before a single block is asked for.
    const checked = await this.options.verifier.verify(envelope, doc.keySet !== undefined ? { keySet: doc.keySet } : {});
    if (s.aborted) return;
    if (!checked.ok) {
      s.finishing = true;
      await this.report(s, jobs, e, 'REJECTED', { reason: checked.reason, message: checked.message });
      this.refused(e.jobId, checked.reason, checked.message);
      return;
    }
    const manifest = checked.manifest;
    const image = await this.download(s, jobs, e, envelope, manifest);
    if (image === null || s.aborted) return;
    await this.installImage(s, jobs, e, envelope, manifest, image);
  }

  /** Describes and downloads the image; its path once complete, null when aborted or failed (reported). */
  private async download(s: Session, jobs: JobsClient, e: JobExecution, envelope: unknown, m: Manifest): Promise<string | null> {
    const id = this.identity!;
    const prefix = filesPrefix(id, m.imageDigest);
    const a = await this.requests.ask(`${prefix}describe`, {}, [`${prefix}description`, `${prefix}rejected`], this.options.requestTimeoutMs ?? 10_000);
    if (s.aborted) return null;
    if (a.topic.endsWith('/rejected')) {
      // Passing refusals: the execution stays IN_PROGRESS, and start-next offers it again a little later.
      if (a.body.errorCode === 'Throttled' || a.body.errorCode === 'InternalError') throw new Error(`describe rejected: ${String(a.body.errorCode)}; trying again`);
      await this.fail(s, jobs, e, 'TransferRejected', `describe rejected: ${String(a.body.errorCode)} (${String(a.body.statusCode)}): ${String(a.body.errorMessage ?? '')}`);
      return null;
    }
    const d = a.body;
    if (d.digest !== m.imageDigest || d.size !== m.imageSize) {
      await this.fail(s, jobs, e, d.digest !== m.imageDigest ? 'DigestMismatch' : 'SizeMismatch', `the broker describes ${String(d.size)} bytes with SHA-256 ${String(d.digest).slice(0, 16)}…, the manifest says ${m.imageSize} bytes, ${m.imageDigest.slice(0, 16)}…`);
      return null;
    }
    const maxBlocks = typeof d.maxBlocksPerRequest === 'number' && Number.isSafeInteger(d.maxBlocksPerRequest) && d.maxBlocksPerRequest >= 1 ? d.maxBlocksPerRequest : 32;
    const suggested = typeof d.blockSize === 'number' && isValidBlockSize(d.blockSize) ? d.blockSize : 16_384;
    let files: DownloadFiles;
    try {
      // One download kept at a time: what is left of other images (a canceled job) goes.
      await discardOtherDownloads(this.options.stateDir, m.imageDigest);
      files = await DownloadFiles.open(this.options.stateDir, m.imageDigest, m.imageSize, this.options.blockSize ?? suggested);
    } catch (err) {
      await this.fail(s, jobs, e, 'StorageError', `cannot open the download: ${errText(err)}`);
      return null;
    }
    const total = files.have.blockCount;
    let decile = -1;
    const progress = (blocks: number, resumed: boolean): void => {
      const d10 = Math.floor((blocks * 10) / total);
      if (d10 <= decile) return;
      decile = d10;
      const received = Math.min(m.imageSize, blocks * files.blockSize);
      this.emit('progress', { jobId: e.jobId, received, total: m.imageSize, blocks, blockCount: total, resumed });
      // At most every 10 %, one after another with the version the previous one returned.
      if (d10 < 10) this.queueUpdate(s, jobs, e, { step: 'download', received, total: m.imageSize });
    };
    progress(files.have.count, files.resumedBlocks > 0);
    const download = new BlockDownload({
      device: this.device,
      identity: id,
      files,
      maxBlocksPerRequest: maxBlocks,
      ...(this.options.blockTimeoutMs !== undefined ? { blockTimeoutMs: this.options.blockTimeoutMs } : {}),
      ...(this.options.maxRetries !== undefined ? { maxRetries: this.options.maxRetries } : {}),
      onBlock: (have) => {
        this.stats.blocksWritten++;
        progress(have, false);
      },
      onRefused: (reason, message) => this.refused(e.jobId, reason, message),
    });
    s.download = download;
    if (s.aborted) download.abort();
    const outcome = await download.run();
    this.stats.getRequests += download.gets;
    s.download = null;
    if (outcome.kind !== 'complete') {
      // Kept for a resume: a timeout or a lost connection costs only the blocks not had.
      await files.suspend().catch(() => undefined);
      if (outcome.kind === 'failed' && outcome.discard === true) await files.discard().catch(() => undefined);
      if (outcome.kind === 'failed') await this.fail(s, jobs, e, outcome.reason, outcome.message);
      return null;
    }
    await files.close();
    // SECURITY: the whole image against the signed manifest before install.
    let hashed;
    try {
      hashed = await files.hash();
    } catch (err) {
      await files.discard().catch(() => undefined);
      await this.fail(s, jobs, e, 'StorageError', `cannot read the download: ${errText(err)}`);
      return null;
    }
    const whole = await this.options.verifier.verify(envelope, { image: hashed });
    if (!whole.ok) {
      await files.discard().catch(() => undefined);
      if (whole.reason === 'DigestMismatch' || whole.reason === 'SizeMismatch') await this.fail(s, jobs, e, whole.reason, whole.message);
      else {
        s.finishing = true;
        await this.report(s, jobs, e, 'REJECTED', { reason: whole.reason, message: whole.message });
        this.refused(e.jobId, whole.reason, whole.message);
      }
      return null;
    }
    const imagePath = join(this.options.stateDir, `${m.imageDigest}.img`);
    await rename(files.partPath, imagePath);
    await files.discard().catch(() => undefined);
    return imagePath;
  }

  private async installImage(s: Session, jobs: JobsClient, e: JobExecution, envelope: unknown, m: Manifest, imagePath: string): Promise<void> {
    try {
      await this.options.install(imagePath, m);
    } catch (err) {
      await rm(imagePath, { force: true }).catch(() => undefined);
      await this.fail(s, jobs, e, 'InstallFailed', `install failed: ${errText(err)}`);
      return;
    }
    try {
      // The record first: it counts only once the verifier's floor is this sequence, so a
      // crash between the two re-installs rather than refusing this job as a rollback.
      await writeInstallRecord(this.options.stateDir, { jobId: e.jobId, manifest: signedBytesOf(envelope) ?? '', sequence: m.sequence, version: m.version, imageDigest: m.imageDigest });
      await this.options.verifier.markInstalled(m);
    } catch (err) {
      await this.fail(s, jobs, e, 'StateError', `installed, but the installed sequence could not be recorded: ${errText(err)}`);
      return;
    }
    await rm(imagePath, { force: true }).catch(() => undefined);
    s.finishing = true;
    const reported = (await this.report(s, jobs, e, 'SUCCEEDED', { sequence: m.sequence, version: m.version })) === 'accepted';
    this.emit('installed', { jobId: e.jobId, version: m.version, sequence: m.sequence, imageDigest: m.imageDigest, reported });
  }

  private async fail(s: Session, jobs: JobsClient, e: JobExecution, reason: OtaFailureReason, message: string): Promise<void> {
    // Stopped already (canceled, the connection lost, closed): nothing more to say about it.
    if (s.aborted) return;
    s.finishing = true;
    const r = await this.report(s, jobs, e, 'FAILED', { reason, message });
    // A job canceled (or timed out) under way fails its next get (NotFound): that is the cancel.
    if (r !== 'ended') this.emit('failed', { jobId: e.jobId, reason, message, reported: r === 'accepted' });
  }

  private queueUpdate(s: Session, jobs: JobsClient, e: JobExecution, d: Record<string, string | number>): void {
    s.updates = s.updates.then(async () => {
      if (s.aborted || s.finishing || !this.ready) return;
      await jobs.update(e, 'IN_PROGRESS', details(d)).catch(() => undefined);
    });
  }

  /**
   * A terminal update after the progress ones: accepted; 'ended' when the service had
   * already ended the execution (canceled or timed out: emitted as 'canceled'); 'rejected'
   * otherwise; 'lost' with the connection (the next start-next offers it again).
   */
  private async report(s: Session, jobs: JobsClient, e: JobExecution, status: TerminalStatus, d: Record<string, string | number>): Promise<'accepted' | 'ended' | 'rejected' | 'lost'> {
    await s.updates;
    // Stopped (canceled, the connection lost, closed): the next start-next decides.
    if (s.aborted) return 'lost';
    try {
      const r = await jobs.update(e, status, details(d));
      if (r.ok) return 'accepted';
      if (r.rejection.status === 'CANCELED' || r.rejection.status === 'TIMED_OUT') {
        this.emit('canceled', { jobId: e.jobId, executionNumber: e.executionNumber });
        return 'ended';
      }
      this.emitError(new Error(`the ${status} report of job ${e.jobId} was rejected: ${r.rejection.errorCode} (${r.rejection.statusCode}): ${r.rejection.errorMessage}`));
      return 'rejected';
    } catch (err) {
      this.emitError(err);
      return 'lost';
    }
  }
}
