/**
 * Signed pruning checkpoints: "records up to seq N were pruned; record N's hash was H and
 * its time X; pruned at time T". Owns: the bytes such a marker's signature covers, signing
 * and checking them. Must not: decide what to prune or touch the database
 * (server/audit-pruner.ts and store/ do).
 *
 * SECURITY: a marker is what lets `audit verify` accept a log that starts at seq N+1: the
 * first kept record must link (prev_hash) to the signed H, so every kept record is still
 * bound to the signature, and deleting records without a marker still reads as "missing".
 * The marker is signed under its own domain (classic: its own message prefix; hybrid: its
 * own context), so an ordinary checkpoint over (N, H) cannot be relabelled as a marker to
 * make a deletion of records 1..N look like retention.
 */
import { sign, verify, type X509Certificate, type KeyObject } from 'node:crypto';
import type { AuditSigner, HybridScheme } from './checkpoint.js';

export interface AuditPruneMarker {
  /** Every record with seq <= this was pruned. */
  seq: number;
  /** The hash of record `seq` (the last one pruned): the first kept record's prev_hash. */
  hash: string;
  /** The time of record `seq`: nothing older than this is kept. */
  headTs: number;
  /** ms since the epoch, when the pruning ran (and the marker was signed). */
  ts: number;
  /** Base64 classic (ECDSA) signature. */
  signature: string;
  signerFingerprint: string;
  /** Hybrid: base64 ML-DSA signature; null on a classic-only signer's marker. */
  pqSignature?: string | null | undefined;
  /** Hybrid: SHA-256 fingerprint of the ML-DSA public key. */
  pqKeyFingerprint?: string | null | undefined;
}

/** The hybrid scheme's context for pruning markers (never the checkpoint's). */
export const PRUNE_CONTEXT = 'bastion-audit-pruned-v1';

/** What both halves of a hybrid marker sign (under PRUNE_CONTEXT). */
export function pruneMessage(m: Pick<AuditPruneMarker, 'seq' | 'hash' | 'headTs' | 'ts' | 'signerFingerprint'>, pqKeyFingerprint: string): string {
  return `pruned-through\n${m.seq}\n${m.hash}\n${m.headTs}\n${m.ts}\n${m.signerFingerprint}\n${pqKeyFingerprint}`;
}

/** What a classic-only marker signs: a prefix no checkpoint message has. */
function classicPruneMessage(m: Pick<AuditPruneMarker, 'seq' | 'hash' | 'headTs' | 'ts' | 'signerFingerprint'>): string {
  return `${PRUNE_CONTEXT}\n${pruneMessage(m, '')}`;
}

export function signPruneMarker(signer: AuditSigner, seq: number, hash: string, headTs: number, ts: number): AuditPruneMarker {
  const body = { seq, hash, headTs, ts, signerFingerprint: signer.fingerprint };
  if (signer.pq !== undefined) {
    const { pq } = signer;
    const sig = pq.scheme.sign(PRUNE_CONTEXT, pruneMessage(body, pq.fingerprint), { classic: signer.key, pq: pq.key });
    return { ...body, signature: sig.classic, pqSignature: sig.pq, pqKeyFingerprint: pq.fingerprint };
  }
  const signature = sign('sha256', Buffer.from(classicPruneMessage(body)), signer.key).toString('base64');
  return { ...body, signature, pqSignature: null, pqKeyFingerprint: null };
}

/** Checks a hybrid marker's two halves (the caller has checked that pqPublic hashes to its fingerprint). */
export function verifyHybridPruneMarker(m: AuditPruneMarker, signerCert: X509Certificate, pqPublic: KeyObject, scheme: HybridScheme): { classic: boolean; pq: boolean; classicAlg: string; pqAlg: string } {
  const r = scheme.verify(PRUNE_CONTEXT, pruneMessage(m, m.pqKeyFingerprint ?? ''), { classic: m.signature, pq: m.pqSignature ?? '' }, { classicPublic: signerCert.publicKey, pqPublic });
  return { classic: r.classic, pq: r.pq, classicAlg: r.classicAlg, pqAlg: r.pqAlg };
}

/** True when a classic-only marker's signature is valid. */
export function verifyPruneMarkerSignature(m: AuditPruneMarker, signerCert: X509Certificate): boolean {
  try {
    return verify('sha256', Buffer.from(classicPruneMessage(m)), signerCert.publicKey, Buffer.from(m.signature, 'base64'));
  } catch {
    return false;
  }
}
