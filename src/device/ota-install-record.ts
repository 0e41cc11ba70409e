/**
 * `<stateDir>/last-install.json`: which job's signed manifest the device installed last.
 * Owns: that record. Must not: decide anything from it (ota-agent.ts does: an execution
 * offered again after its install, because the SUCCEEDED report was lost with a crash or
 * a disconnect, is reported SUCCEEDED instead of being refused as a rollback).
 *
 * SECURITY: the record only lets the agent repeat a report for the very signed manifest
 * (its exact signed bytes) of the very job it installed, at the sequence the verifier now
 * holds; it never makes the verifier accept anything.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeAtomic } from './ota-download-state.js';
import { jsonObjectOf, type JsonObject } from './protocol.js';

const LAST_INSTALL_FILE = 'last-install.json';

export interface InstallRecord {
  jobId: string;
  /** The signed manifest bytes (the envelope's base64 `manifest`). */
  manifest: string;
  sequence: number;
  version: string;
  imageDigest: string;
}

/** The signed manifest bytes (base64) of an envelope, to recognise the same manifest again. */
export function signedBytesOf(envelope: unknown): string | null {
  let v = envelope;
  if (typeof v === 'string') v = jsonObjectOf(v);
  if (typeof v !== 'object' || v === null) return null;
  const m = (v as JsonObject).manifest;
  return typeof m === 'string' ? m : null;
}

export async function readInstallRecord(stateDir: string): Promise<InstallRecord | null> {
  try {
    const o = jsonObjectOf(await readFile(join(stateDir, LAST_INSTALL_FILE), 'utf8'));
    if (o === null || typeof o.jobId !== 'string' || typeof o.manifest !== 'string' || typeof o.sequence !== 'number') return null;
    return { jobId: o.jobId, manifest: o.manifest, sequence: o.sequence, version: typeof o.version === 'string' ? o.version : '', imageDigest: typeof o.imageDigest === 'string' ? o.imageDigest : '' };
  } catch {
    return null;
  }
}

export async function writeInstallRecord(stateDir: string, r: InstallRecord): Promise<void> {
  await writeAtomic(stateDir, join(stateDir, LAST_INSTALL_FILE), `${JSON.stringify(r)}\n`);
}
