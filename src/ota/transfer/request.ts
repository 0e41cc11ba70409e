/**
 * The JSON requests of OTA block transfer (docs/OTA.md "Block transfer"): reading and
 * checking `describe` and `get`, the block size bounds, and the bitmap of wanted blocks.
 * Owns: those rules and the refusal they give. Must not: look up images or send
 * anything (transfer-service.ts).
 *
 * SECURITY: a request is bounded before it is parsed (MAX_TRANSFER_REQUEST_BYTES), and
 * every number is checked to be a safe integer in its range, so nothing a device sends
 * makes the broker allocate or loop more than one request's blocks.
 */

/** A request is a few numbers and a bitmap: anything larger is refused unread. */
export const MAX_TRANSFER_REQUEST_BYTES = 4096;
export const MIN_BLOCK_SIZE = 256;
export const MAX_BLOCK_SIZE = 131072;
/** What a data message's topic, header and properties may add to a block, at most. */
export const PACKET_OVERHEAD_BYTES = 512;

export type TransferErrorCode = 'InvalidRequest' | 'InvalidJson' | 'NotFound' | 'Throttled' | 'InternalError';

/** A refusal answered on `…/rejected`. */
export class TransferRefusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly errorCode: TransferErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TransferRefusal';
  }
}

const invalid = (message: string): TransferRefusal => new TransferRefusal(400, 'InvalidRequest', message);

type Json = Record<string, unknown>;

/** The JSON object of a request (an empty payload is `{}`). */
export function parseRequestJson(payload: Buffer): Json {
  if (payload.length > MAX_TRANSFER_REQUEST_BYTES) throw invalid(`a request is at most ${MAX_TRANSFER_REQUEST_BYTES} bytes`);
  if (payload.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new TransferRefusal(400, 'InvalidJson', 'the payload is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TransferRefusal(400, 'InvalidJson', 'the payload is not a JSON object');
  return v as Json;
}

/** `clientToken`, echoed in the answer: a string of at most 64 characters, or absent. */
export function clientTokenOf(req: Json): string | undefined {
  const t = req.clientToken;
  if (t === undefined) return undefined;
  if (typeof t !== 'string' || t.length > 64) throw invalid('clientToken is a string of at most 64 characters');
  return t;
}

/** The largest block size a client accepting packets of `maxPacketSize` bytes can take (0: none). */
export function largestBlockSizeFor(maxPacketSize: number): number {
  const room = Math.min(MAX_BLOCK_SIZE, maxPacketSize - PACKET_OVERHEAD_BYTES);
  return room < MIN_BLOCK_SIZE ? 0 : Math.floor(room / MIN_BLOCK_SIZE) * MIN_BLOCK_SIZE;
}

/** The shape of a get, before the image is known. */
export interface GetRequest {
  blockSize: number;
  firstBlock: number;
  /** Absent: the broker's maxBlocksPerRequest. */
  blockCount: number | undefined;
  bitmap: Buffer | undefined;
  clientToken: string | undefined;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function intField(req: Json, key: string, min: number, max: number, required: boolean): number | undefined {
  const v = req[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw invalid(`${key} must be an integer from ${min} to ${max}`);
  return v;
}

/** Checks a get's fields; `maxPacketSize` is the requester's (its v5 Maximum Packet Size). */
export function parseGet(req: Json, maxBlocksPerRequest: number, maxPacketSize: number): GetRequest {
  const clientToken = clientTokenOf(req);
  const largest = largestBlockSizeFor(maxPacketSize);
  if (largest === 0) throw invalid(`the client's Maximum Packet Size (${maxPacketSize}) leaves no room for a block of ${MIN_BLOCK_SIZE} bytes`);
  const blockSize = intField(req, 'blockSize', MIN_BLOCK_SIZE, largest, true)!;
  if (blockSize % MIN_BLOCK_SIZE !== 0) throw invalid(`blockSize must be a multiple of ${MIN_BLOCK_SIZE} from ${MIN_BLOCK_SIZE} to ${largest}`);
  const firstBlock = intField(req, 'firstBlock', 0, 0xffffffff, true)!;
  const blockCount = intField(req, 'blockCount', 1, maxBlocksPerRequest, false);
  let bitmap: Buffer | undefined;
  if (req.bitmap !== undefined) {
    if (typeof req.bitmap !== 'string' || !BASE64.test(req.bitmap)) throw invalid('bitmap must be base64');
    bitmap = Buffer.from(req.bitmap, 'base64');
  }
  return { blockSize, firstBlock, blockCount, bitmap, clientToken };
}

/**
 * The block indices a get asks for, in order, for an image of `imageBlocks` blocks:
 * `firstBlock` onwards, `blockCount` of them (default `maxBlocksPerRequest`) clipped at the
 * last block, those the bitmap marks (bit i = block firstBlock+i). The bitmap is
 * ceil(n/8) bytes for n the count asked for or the clipped count (a device may size it
 * either way); bits past the image's end are ignored.
 */
export function wantedBlocks(get: GetRequest, imageBlocks: number, maxBlocksPerRequest: number): number[] {
  if (get.firstBlock >= imageBlocks) throw invalid(`firstBlock ${get.firstBlock} is past the last block (${imageBlocks - 1}) at blockSize ${get.blockSize}`);
  const asked = get.blockCount ?? maxBlocksPerRequest;
  const count = Math.min(asked, imageBlocks - get.firstBlock);
  const out: number[] = [];
  if (get.bitmap === undefined) {
    for (let i = 0; i < count; i++) out.push(get.firstBlock + i);
    return out;
  }
  const len = get.bitmap.length;
  if (len !== Math.ceil(asked / 8) && len !== Math.ceil(count / 8)) throw invalid(`bitmap must be ${Math.ceil(asked / 8)} bytes (one bit per block of the range), not ${len}`);
  for (let i = 0; i < count; i++) if (((get.bitmap[i >> 3]! >> (i & 7)) & 1) === 1) out.push(get.firstBlock + i);
  return out;
}

/** Encodes a bitmap of `count` bits with the `wanted` offsets set (devices and tests). */
export function encodeBitmap(count: number, wanted: Iterable<number>): string {
  const b = Buffer.alloc(Math.ceil(count / 8));
  for (const i of wanted) if (i >= 0 && i < count) b[i >> 3] = b[i >> 3]! | (1 << (i & 7));
  return b.toString('base64');
}
