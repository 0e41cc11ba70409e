/**
 * The `ota` section of the configuration (issue 14): settings of the broker side of OTA
 * updates; today the block transfer's flow control (docs/OTA.md "Block transfer").
 * Owns: what a valid section is and its defaults. Must not: read files or act on it.
 *
 * SECURITY: the defaults bound what downloads may cost: 32 MiB/s for all devices together
 * (so telemetry keeps its share of the broker), 32 blocks per request.
 */
import { z } from 'zod';

export const OTA_BLOCK_SIZE_STEP = 256;

const transferSchema = z
  .object({
    /** Bytes a second the broker writes in data blocks, all devices together (a token bucket). */
    maxBytesPerSecond: z
      .number()
      .int()
      .min(64 * 1024)
      .max(1024 * 1024 * 1024)
      .default(32 * 1024 * 1024),
    /** The most blocks one get may ask for (and the default count of a get that names none). */
    maxBlocksPerRequest: z.number().int().min(1).max(256).default(32),
    /** The block size a description suggests (clipped to what the client accepts): a multiple of 256 from 256 to 131072. */
    defaultBlockSize: z
      .number()
      .int()
      .min(256)
      .max(131072)
      .refine((n) => n % OTA_BLOCK_SIZE_STEP === 0, 'must be a multiple of 256')
      .default(16384),
    /** Data messages kept in memory and shared by the devices fetching the same blocks (0: none). */
    blockCacheBytes: z
      .number()
      .int()
      .min(0)
      .max(1024 * 1024 * 1024)
      .default(32 * 1024 * 1024),
  })
  .strict();

export const otaSchema = z
  .object({
    transfer: transferSchema.default(transferSchema.parse({})),
  })
  .strict();

export type OtaConfig = z.infer<typeof otaSchema>;
export type OtaTransferConfig = OtaConfig['transfer'];
