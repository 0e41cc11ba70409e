/**
 * OTA block transfer over MQTT (issue 14 item 4, after AWS IoT MQTT-based file delivery):
 * the broker service that owns `$bastion/ota/<identity>/files/<digest>/describe|get`,
 * answers `…/description` or `…/rejected` to the requester only, and hands the blocks a
 * get asks for to the scheduler, which writes them to `…/data`. Owns: the order of the
 * checks (identity, rate, JSON, fields, fence, range), the per-device request rate, one
 * device's requests answered in the order they came, and the counters. Must not:
 * authorize topics (transfer-guard.ts ran before), pace blocks (scheduler.ts) or read
 * the job and release files itself (fence.ts, block-source.ts).
 *
 * SECURITY: the identity a request acts for is the one the guard checked (the topic's,
 * equal to the requester's certificate identity), checked again here; a device gets only
 * the release images of its own pending job executions, and NotFound for everything else
 * (whether the image exists or not); the broker keeps no per-download state beyond the
 * one active get per device.
 */
import type { ClientService, ServiceReply } from '../../broker/client-services.js';
import type { AuthorizedClient } from '../../broker/ports.js';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { blockCountOf, blockMessage, BLOCK_HEADER_BYTES } from './block-source.js';
import type { FencedImage } from './fence.js';
import { clientTokenOf, largestBlockSizeFor, parseGet, parseRequestJson, TransferRefusal, wantedBlocks, type GetRequest, type TransferErrorCode } from './request.js';
import { KeyedTokenBuckets } from '../../security/limits/keyed-buckets.js';
import { BlockCache } from './block-cache.js';
import { TransferScheduler, type DropReason } from './scheduler.js';
import { transferRequestOf, transferTopic, type TransferRequestKind } from './topics.js';

/**
 * Per device: a burst of this many requests, then RATE_PER_SECOND. Each get is one round
 * trip of the download, so the rate bounds a device's speed: 10 a second held one device
 * to 5 MiB/s at 16 KiB × 32 blocks; a request costs one indexed SQLite read.
 */
const BURST = 100;
const RATE_PER_SECOND = 50;
/** Rate buckets kept before the full (idle) ones are forgotten. */
const MAX_BUCKETS = 4096;

export interface TransferSettings {
  maxBytesPerSecond: number;
  maxBlocksPerRequest: number;
  /** The block size a description suggests (clipped to what the client accepts). */
  defaultBlockSize: number;
  /** Data messages kept in memory, shared by every device fetching the same blocks (0: none). */
  blockCacheBytes: number;
}

export const DEFAULT_TRANSFER_SETTINGS: TransferSettings = { maxBytesPerSecond: 32 * 1024 * 1024, maxBlocksPerRequest: 32, defaultBlockSize: 16384, blockCacheBytes: 32 * 1024 * 1024 };

export interface TransferDeps {
  /** The image a device may fetch (fence.ts), or null. */
  imageFor(identity: string, digest: string): Promise<FencedImage | null>;
  /** Bytes of a stored image (block-source.ts). */
  readImage(digest: string, size: number, offset: number, length: number): Promise<Buffer>;
  identityOf(client: AuthorizedClient): string | null;
  logger: Logger;
  clock: Clock;
  settings: TransferSettings;
  /** Per device: unacknowledged messages before its blocks wait (scheduler default when absent). */
  maxBacklog?: number;
}

export interface TransferStats {
  blocksSent: number;
  bytesSent: number;
  refusals: Record<TransferErrorCode, number>;
  /** Gets ended before their last block (replaced, disconnected, …). */
  dropped: Record<DropReason, number>;
}

type Json = Record<string, unknown>;

export class TransferService implements ClientService {
  readonly stats: TransferStats = {
    blocksSent: 0,
    bytesSent: 0,
    refusals: { InvalidRequest: 0, InvalidJson: 0, NotFound: 0, Throttled: 0, InternalError: 0 },
    dropped: { replaced: 0, disconnected: 0, unsubscribed: 0, 'read-failed': 0, stopped: 0 },
  };
  /** Answers that found no matching subscription of the requester. */
  unanswered = 0;
  private readonly scheduler: TransferScheduler;
  /** The data messages of the blocks devices fetch (one image to a fleet: each block read once). */
  readonly cache: BlockCache;
  private readonly buckets = new KeyedTokenBuckets(RATE_PER_SECOND, BURST, MAX_BUCKETS);
  /** Per device, the tail of its requests being answered (in arrival order). */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly deps: TransferDeps) {
    this.cache = new BlockCache(deps.settings.blockCacheBytes);
    this.scheduler = new TransferScheduler({
      maxBytesPerSecond: deps.settings.maxBytesPerSecond,
      clock: deps.clock,
      ...(deps.maxBacklog !== undefined ? { maxBacklog: deps.maxBacklog } : {}),
      onSent: (_identity, bytes) => {
        this.stats.blocksSent++;
        this.stats.bytesSent += bytes;
      },
      onDropped: (identity, reason, unsent, err) => {
        this.stats.dropped[reason]++;
        if (reason === 'read-failed') deps.logger.error({ identity, err: err instanceof Error ? err.message : String(err) }, 'ota transfer: reading a block failed');
        else deps.logger.debug({ identity, reason, unsent }, 'ota transfer: blocks dropped');
      },
    });
  }

  /** Gets with blocks still to send. */
  get activeDownloads(): number {
    return this.scheduler.active;
  }

  owns(topic: string): boolean {
    return transferRequestOf(topic) !== null;
  }

  handle(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): void {
    const request = transferRequestOf(topic)!;
    const { identity, digest } = request;
    let clientToken: string | undefined;
    let get: GetRequest | null = null;
    try {
      // The guard let only the topic's own device publish here; check again rather than trust the wiring.
      if (this.deps.identityOf(client) !== identity) throw new TransferRefusal(403, 'InvalidRequest', 'not this device’s OTA files');
      if (!this.take(identity)) throw new TransferRefusal(429, 'Throttled', `at most ${RATE_PER_SECOND} transfer requests a second`);
      const req = parseRequestJson(payload);
      clientToken = clientTokenOf(req);
      if (request.kind === 'get') get = parseGet(req, this.deps.settings.maxBlocksPerRequest, reply.maxPacketSize());
    } catch (err) {
      this.refuse(client, reply, identity, digest, err, clientToken);
      return;
    }
    this.serially(identity, () => this.answer(client, reply, identity, digest, request.kind, get, clientToken));
  }

  /** Drops every pending block (the broker is stopping). */
  stop(): void {
    this.scheduler.stop();
  }

  private serially(identity: string, fn: () => Promise<void>): void {
    const tail = (this.chains.get(identity) ?? Promise.resolve()).then(fn);
    this.chains.set(identity, tail);
    void tail.finally(() => {
      if (this.chains.get(identity) === tail) this.chains.delete(identity);
    });
  }

  /** The part of a request that needs the fence (never rejects). */
  private async answer(client: AuthorizedClient, reply: ServiceReply, identity: string, digest: string, kind: TransferRequestKind, get: GetRequest | null, clientToken: string | undefined): Promise<void> {
    try {
      const image = await this.deps.imageFor(identity, digest);
      // SECURITY: one answer for "no such image" and "not yours": nothing to probe.
      if (image === null) throw new TransferRefusal(404, 'NotFound', 'no such image for this device (it must be the release of one of its queued or in-progress jobs)');
      if (kind === 'describe') {
        const blockSize = Math.min(this.deps.settings.defaultBlockSize, largestBlockSizeFor(reply.maxPacketSize()));
        if (blockSize === 0) throw new TransferRefusal(400, 'InvalidRequest', 'the client’s Maximum Packet Size leaves no room for a block');
        const body: Json = { digest, size: image.size, blockSize, blockCount: blockCountOf(image.size, blockSize), maxBlocksPerRequest: this.deps.settings.maxBlocksPerRequest };
        this.send(client, reply, transferTopic(identity, digest, 'description'), { ...body, ...(clientToken !== undefined ? { clientToken } : {}) });
        return;
      }
      const g = get!;
      const indices = wantedBlocks(g, blockCountOf(image.size, g.blockSize), this.deps.settings.maxBlocksPerRequest);
      const blockBytes = (i: number): number => Math.min(g.blockSize, image.size - i * g.blockSize);
      this.scheduler.submit({
        identity,
        link: reply,
        topic: transferTopic(identity, digest, 'data'),
        indices,
        sizeOf: (i) => BLOCK_HEADER_BYTES + blockBytes(i),
        read: (i) => this.cache.get(`${digest}:${g.blockSize}:${i}`, async () => blockMessage(digest, i, g.blockSize, await this.deps.readImage(digest, image.size, i * g.blockSize, blockBytes(i)))),
      });
    } catch (err) {
      this.refuse(client, reply, identity, digest, err, clientToken);
    }
  }

  private refuse(client: AuthorizedClient, reply: ServiceReply, identity: string, digest: string, err: unknown, clientToken: string | undefined): void {
    const r = err instanceof TransferRefusal ? err : new TransferRefusal(500, 'InternalError', 'the request failed (see the broker log)');
    if (!(err instanceof TransferRefusal)) this.deps.logger.error({ clientId: client.clientId, identity, digest, err: err instanceof Error ? err.message : String(err) }, 'ota transfer request failed');
    else this.deps.logger.debug({ clientId: client.clientId, identity, digest, errorCode: r.errorCode, reason: r.message }, 'ota transfer request refused');
    this.stats.refusals[r.errorCode]++;
    this.send(client, reply, transferTopic(identity, digest, 'rejected'), { statusCode: r.statusCode, errorCode: r.errorCode, errorMessage: r.message, ...(clientToken !== undefined ? { clientToken } : {}) });
  }

  private take(identity: string): boolean {
    return this.buckets.take(identity, this.deps.clock.now());
  }

  private send(client: AuthorizedClient, reply: ServiceReply, topic: string, body: Json): void {
    if (reply.send(topic, Buffer.from(JSON.stringify(body)))) return;
    this.unanswered++;
    this.deps.logger.warn({ clientId: client.clientId, topic }, 'ota transfer answer not delivered: the client did not subscribe to it before asking');
  }
}
