/**
 * The types of `OtaAgent` (ota-agent.ts): its options, its events and their payloads, its
 * counters and the reasons a job fails. Owns: those shapes (part of `bastion-mqtt/device`).
 * Must not: hold behaviour.
 */
import type { Manifest, RefusalReason } from '../firmware/index.js';
import type { BastionDevice } from './device.js';
import type { BlockRefusal } from './ota-blocks.js';
import type { UpdateVerifier } from './ota-verify.js';

export interface OtaAgentOptions {
  /** A BastionDevice (connected now or later); the agent follows its reconnects. */
  device: BastionDevice;
  /** Checks every manifest and image; its vendorId and classId are this device's. */
  verifier: UpdateVerifier;
  /** Where downloads are kept (`<digest>.part`, `<digest>.bitmap`) until installed. */
  stateDir: string;
  /** The application's bootloader step: put the image at `imagePath` in place. Throwing fails the job (InstallFailed). */
  install(imagePath: string, manifest: Manifest): Promise<void>;
  /** Block size to ask for (a multiple of 256 up to 131072); default: the broker's suggestion. */
  blockSize?: number;
  /** Wait for a block before asking again, default 10 s. */
  blockTimeoutMs?: number;
  /** Asks again after a timeout at most this many times in a row, default 5, then FAILED. */
  maxRetries?: number;
  /** Deadline of each jobs or describe request, default 10 s. */
  requestTimeoutMs?: number;
}

/** Why a job failed (FAILED), besides the verifier's DigestMismatch and SizeMismatch. */
export type OtaFailureReason = 'DigestMismatch' | 'SizeMismatch' | 'InstallFailed' | 'DownloadTimeout' | 'TransferRejected' | 'StorageError' | 'StateError';

export interface OtaJobInfo {
  jobId: string;
  executionNumber: number;
  releaseId: string | undefined;
  version: string | undefined;
}

export interface OtaAgentEvents {
  /** An execution was taken (started or resumed). */
  job: [OtaJobInfo];
  /** Download progress in bytes, at most every 10 % (and when a download starts or resumes). */
  progress: [{ jobId: string; received: number; total: number; blocks: number; blockCount: number; resumed: boolean }];
  /** A manifest refused (reported REJECTED), or a block not written. */
  refused: [{ jobId: string | undefined; reason: RefusalReason | BlockRefusal | 'Malformed'; message: string }];
  installed: [{ jobId: string; version: string; sequence: number; imageDigest: string; reported: boolean }];
  failed: [{ jobId: string; reason: OtaFailureReason; message: string; reported: boolean }];
  /** The execution being worked on stopped being this device's next one (canceled or timed out). */
  canceled: [{ jobId: string; executionNumber: number }];
  /** Failures that belong to no job (a subscription refused, a request that timed out). */
  error: [Error];
}

export interface OtaAgentStats {
  blocksWritten: number;
  blocksRefused: number;
  getRequests: number;
}
