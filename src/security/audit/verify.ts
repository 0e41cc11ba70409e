/**
 * Verifying an audit log: walks the records in seq order with the checkpoints and names
 * the first problem (altered, missing, out of order, rewritten, truncated, bad checkpoint
 * signature). Owns: the checks and the wording of the one line an operator reads.
 * Must not: read the database (the caller streams rows in) or decide exit codes (cli/ does).
 *
 * SECURITY: what each check proves.
 * - A record's own hash: its seq, time, event and link were not edited in place.
 * - The link (prevHash) and seq continuity: no record was deleted or moved.
 * - Checkpoints: someone who rewrote the chain consistently (edit, then re-hash every
 *   record after it) cannot produce the signed hash; a checkpoint past the last record
 *   shows the tail was cut. Records after the last checkpoint are only hash-linked: a
 *   consistent rewrite or cut there is undetectable here, so they are reported as a warning.
 * - Hybrid (v2) checkpoints: both the ECDSA and the ML-DSA signature must verify, and the
 *   ML-DSA key must hash to the fingerprint the ECDSA half signed (checkpoint.ts says why
 *   that binds it). Classic-only (v1) checkpoints still verify, with a warning that they
 *   have no post-quantum signature; one after a hybrid checkpoint is a downgrade (a
 *   Bastion that writes hybrid checkpoints never writes v1 ones again) and fails.
 * - Query columns: the stored `type` and `client_id` (what `audit query` filters on) must
 *   be what the hashed event says; otherwise an edit of a column the hash does not cover
 *   could hide a record from queries and still verify.
 * - Pruning (retention): a signed pruning marker (prune.ts) says records up to seq N were
 *   removed and names record N's hash; the walk then starts at N+1 and the first kept
 *   record must link to that hash. Without a valid marker, missing leading records are
 *   reported as deleted, as before.
 */
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { chainsToAnchor, isHybridCheckpoint, splitCertificates, verifyCheckpointSignature, verifyHybridCheckpoint, type AuditCheckpoint, type HybridScheme } from './checkpoint.js';
import { verifyHybridPruneMarker, verifyPruneMarkerSignature, type AuditPruneMarker } from './prune.js';
import { GENESIS_HASH, canonicalJson, hashRecordJson } from './record.js';

/** A stored record as verify reads it: the event as the JSON text that was stored. */
export interface StoredAuditRecord {
  seq: number;
  ts: number;
  eventJson: string;
  prevHash: string;
  hash: string;
  /** The stored query column `type`, when the store has one: must equal the event's type. */
  type?: string | undefined;
  /** The stored query column `client_id`, when the store has one: must equal the event's clientId (null: none). */
  clientId?: string | null | undefined;
}

export type AuditProblemKind = 'altered' | 'missing' | 'reordered' | 'rewritten' | 'truncated' | 'bad-signature' | 'unknown-signer' | 'untrusted-signer' | 'unsigned' | 'downgraded';

export interface AuditProblem {
  kind: AuditProblemKind;
  /** The first record (or checkpoint seq) the problem is about. */
  seq: number;
  /** One line naming it, e.g. "record 42 was altered (hash mismatch)". */
  message: string;
}

export interface AuditVerifyInput {
  /** Every record, ascending seq (as the store yields them). */
  records: Iterable<StoredAuditRecord>;
  /** Every checkpoint (any order). */
  checkpoints: readonly AuditCheckpoint[];
  /** Pruning markers (retention); the one with the highest seq says where the kept log starts. */
  pruned?: readonly AuditPruneMarker[] | undefined;
  /** Signer certificates (leaf first, then chain) by SHA-256 fingerprint. */
  signers: ReadonlyMap<string, string>;
  /** ML-DSA public keys (SPKI PEM) of hybrid checkpoints by SHA-256 fingerprint. */
  pqKeys?: ReadonlyMap<string, string> | undefined;
  /** The hybrid scheme (pki/hybrid-signature.ts HYBRID_SIGNATURES); without it a hybrid checkpoint cannot be checked and fails. */
  hybrid?: HybridScheme | undefined;
  /** The PKI root: when given, every signer must chain to it (no self-signed signers). */
  trustAnchorPem?: string | undefined;
  /** Finds a record by its stored hash (used only to tell a move from an edit). */
  recordWithHash?: ((hash: string) => StoredAuditRecord | undefined) | undefined;
  /**
   * Records after the last checkpoint fail the check instead of warning. For a log whose
   * broker stopped cleanly (its last act is a checkpoint over the last record): there, an
   * unsigned tail means checkpoints were removed and the tail may have been rewritten.
   */
  strict?: boolean | undefined;
}

export interface AuditVerifyResult {
  ok: boolean;
  records: number;
  checkpoints: number;
  lastSeq: number;
  /** Seq of the last checkpoint that verified and matched, 0 when none. */
  lastSignedSeq: number;
  problem: AuditProblem | null;
  /** Not failures: an uncovered tail, self-signed checkpoints. */
  warnings: string[];
  /** The records after the last valid checkpoint, if any: hash-linked but not signed. */
  unsigned: { from: number; to: number; oldestTs: number } | null;
  /** Fingerprints of the signers that signed a valid checkpoint. */
  signersUsed: string[];
  /** Fingerprints of the ML-DSA keys of valid hybrid checkpoints. */
  pqKeysUsed: string[];
  /** The signature algorithms of the valid checkpoints, e.g. "ECDSA P-256 + ML-DSA-65", "ECDSA P-256" (classic only). */
  algorithms: string[];
  /** What retention removed, from the valid pruning marker: records 1..throughSeq, the newest of them from headTs, pruned at prunedAt. */
  pruned: { throughSeq: number; hash: string; headTs: number; prunedAt: number } | null;
}

type PqKeyCheck = { ok: true; key: KeyObject } | { ok: false; why: string };

type SignerCheck = { ok: true; cert: X509Certificate } | { ok: false; kind: 'unknown-signer' | 'untrusted-signer'; why: string };

function hashOf(r: StoredAuditRecord, seq: number): string | null {
  try {
    // Re-canonicalise: whatever JSON text sits in the row, the hash covers its canonical form.
    return hashRecordJson(seq, r.ts, r.prevHash, canonicalJson(JSON.parse(r.eventJson) as unknown));
  } catch {
    return null;
  }
}

/** The row's own hash check, parsing its event once; the parsed event for the column check. */
function checkHash(r: StoredAuditRecord): { ok: boolean; event: unknown } {
  try {
    const event = JSON.parse(r.eventJson) as unknown;
    return { ok: hashRecordJson(r.seq, r.ts, r.prevHash, canonicalJson(event)) === r.hash, event };
  } catch {
    return { ok: false, event: null };
  }
}

/**
 * The first stored query column that disagrees with the hashed event, or null. Derived as
 * the writer derives them (audit-writer.ts): `type`, and `clientId` when it is a string.
 */
function columnMismatch(r: StoredAuditRecord, event: unknown): string | null {
  const fields = event !== null && typeof event === 'object' ? (event as Record<string, unknown>) : {};
  if (r.type !== undefined && r.type !== fields.type) return 'type';
  const clientId = typeof fields.clientId === 'string' ? fields.clientId : null;
  if (r.clientId !== undefined && r.clientId !== clientId) return 'client_id';
  return null;
}

function range(from: number, to: number): string {
  return from === to ? `record ${from} is` : `records ${from} to ${to} are`;
}

export function verifyAuditLog(input: AuditVerifyInput): AuditVerifyResult {
  const checkpoints = [...input.checkpoints].sort((a, b) => a.seq - b.seq || a.ts - b.ts);
  const signerChecks = new Map<string, SignerCheck>();
  const signersUsed = new Set<string>();
  const pqKeyChecks = new Map<string, PqKeyCheck>();
  const pqKeysUsed = new Set<string>();
  const algorithms = new Set<string>();
  const classicOnly: number[] = [];
  let hybridSeen: number | null = null;
  const warnings: string[] = [];
  let records = 0;
  let prev: { seq: number; hash: string } | null = null;
  let cpIndex = 0;
  let lastSignedSeq = 0;
  let unsignedFromTs = 0;
  let pruned: AuditVerifyResult['pruned'] = null;
  let skippedBelowPrune = 0;

  const checkSigner = (fp: string): SignerCheck => {
    let c = signerChecks.get(fp);
    if (c !== undefined) return c;
    const pem = input.signers.get(fp);
    const leafPem = pem === undefined ? undefined : splitCertificates(pem)[0];
    if (pem === undefined || leafPem === undefined) c = { ok: false, kind: 'unknown-signer', why: `unknown signer ${fp}` };
    else {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(leafPem);
      } catch {
        c = { ok: false, kind: 'unknown-signer', why: `the stored certificate of signer ${fp} cannot be read` };
        signerChecks.set(fp, c);
        return c;
      }
      if (cert.fingerprint256 !== fp) c = { ok: false, kind: 'unknown-signer', why: `signer ${fp} is stored with another certificate` };
      else if (input.trustAnchorPem !== undefined && !chainsToAnchor(pem, input.trustAnchorPem)) c = { ok: false, kind: 'untrusted-signer', why: `signer ${fp} does not chain to the PKI root` };
      else c = { ok: true, cert };
    }
    signerChecks.set(fp, c);
    return c;
  };

  const result = (problem: AuditProblem | null): AuditVerifyResult => ({
    ok: problem === null,
    records,
    checkpoints: checkpoints.length,
    lastSeq: prev?.seq ?? 0,
    lastSignedSeq,
    problem,
    warnings,
    unsigned: prev !== null && prev.seq > lastSignedSeq ? { from: lastSignedSeq + 1, to: prev.seq, oldestTs: unsignedFromTs } : null,
    signersUsed: [...signersUsed],
    pqKeysUsed: [...pqKeysUsed],
    algorithms: [...algorithms],
    pruned,
  });

  const checkPqKey = (fp: string, scheme: HybridScheme): PqKeyCheck => {
    let c = pqKeyChecks.get(fp);
    if (c !== undefined) return c;
    const pem = input.pqKeys?.get(fp);
    if (pem === undefined) c = { ok: false, why: `unknown ML-DSA key ${fp}` };
    else {
      try {
        const key = createPublicKey(pem);
        c = scheme.fingerprint(key) === fp ? { ok: true, key } : { ok: false, why: `ML-DSA key ${fp} is stored with another public key` };
      } catch {
        c = { ok: false, why: `the stored ML-DSA key ${fp} cannot be read` };
      }
    }
    pqKeyChecks.set(fp, c);
    return c;
  };

  const classicName = (cert: X509Certificate): string => {
    try {
      return input.hybrid?.classicAlgorithm(cert.publicKey) ?? 'classic';
    } catch {
      return 'classic';
    }
  };

  /** Checks a pruning marker's signature (prune.ts: its own signed domain); a problem or null. */
  const pruneProblem = (m: AuditPruneMarker, hybridLog: boolean): AuditProblem | null => {
    const at = `pruning checkpoint (records up to seq ${m.seq})`;
    const bad = (why: string): AuditProblem => ({ kind: 'bad-signature', seq: m.seq, message: `${at}: ${why}` });
    const signer = checkSigner(m.signerFingerprint);
    if (!signer.ok) return { kind: signer.kind, seq: m.seq, message: `${at}: ${signer.why}` };
    const pqFp = m.pqKeyFingerprint ?? null;
    if ((m.pqSignature ?? null) !== null || pqFp !== null) {
      const scheme = input.hybrid;
      if ((m.pqSignature ?? null) === null || pqFp === null) return bad('incomplete hybrid signature (the ML-DSA signature or its key fingerprint is missing)');
      if (scheme === undefined) return bad('hybrid signature cannot be checked here (no ML-DSA verifier given)');
      const pqKey = checkPqKey(pqFp, scheme);
      if (!pqKey.ok) return { kind: 'unknown-signer', seq: m.seq, message: `${at}: ${pqKey.why}` };
      const r = verifyHybridPruneMarker(m, signer.cert, pqKey.key, scheme);
      if (!r.classic && !r.pq) return bad('bad signature');
      if (!r.classic) return bad(`bad ${r.classicAlg} signature (the ${r.pqAlg} signature is valid)`);
      if (!r.pq) return bad(`bad ${r.pqAlg} signature (the ${r.classicAlg} signature is valid)`);
      pqKeysUsed.add(pqFp);
      algorithms.add(`${r.classicAlg} + ${r.pqAlg}`);
    } else {
      if (!verifyPruneMarkerSignature(m, signer.cert)) return bad('bad signature');
      // SECURITY: a hybrid-signing broker never writes a classic-only marker; one in a log
      // with hybrid checkpoints is forged by someone who can sign (or forge) only ECDSA.
      if (hybridLog) return { kind: 'downgraded', seq: m.seq, message: `${at}: classic-only signature in a log with hybrid checkpoints (a downgrade: forged or stripped)` };
      algorithms.add(`${classicName(signer.cert)} (classic only)`);
    }
    signersUsed.add(m.signerFingerprint);
    return null;
  };

  /** Checks a checkpoint's signature; a problem or null. */
  const signatureProblem = (cp: AuditCheckpoint): AuditProblem | null => {
    const signer = checkSigner(cp.signerFingerprint);
    if (!signer.ok) return { kind: signer.kind, seq: cp.seq, message: `checkpoint at seq ${cp.seq}: ${signer.why}` };
    const at = `checkpoint at seq ${cp.seq}`;
    if (isHybridCheckpoint(cp)) {
      const scheme = input.hybrid;
      const pqFp = cp.pqKeyFingerprint ?? null;
      if ((cp.pqSignature ?? null) === null || pqFp === null) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: incomplete hybrid signature (the ML-DSA signature or its key fingerprint is missing)` };
      if (scheme === undefined) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: hybrid signature cannot be checked here (no ML-DSA verifier given)` };
      const pqKey = checkPqKey(pqFp, scheme);
      if (!pqKey.ok) return { kind: 'unknown-signer', seq: cp.seq, message: `${at}: ${pqKey.why}` };
      const r = verifyHybridCheckpoint(cp, signer.cert, pqKey.key, scheme);
      // Both bad: the signed content (seq, hash, ts or a fingerprint) was changed.
      if (!r.classic && !r.pq) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: bad signature` };
      if (!r.classic) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: bad ${r.classicAlg} signature (the ${r.pqAlg} signature is valid)` };
      if (!r.pq) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: bad ${r.pqAlg} signature (the ${r.classicAlg} signature is valid)` };
      hybridSeen ??= cp.seq;
      pqKeysUsed.add(pqFp);
      algorithms.add(`${r.classicAlg} + ${r.pqAlg}`);
    } else {
      if (!verifyCheckpointSignature(cp, signer.cert)) return { kind: 'bad-signature', seq: cp.seq, message: `${at}: bad signature` };
      if (hybridSeen !== null) {
        return { kind: 'downgraded', seq: cp.seq, message: `${at}: classic-only signature after the hybrid checkpoint at seq ${hybridSeen} (a downgrade: the ML-DSA signature was removed or the checkpoint forged)` };
      }
      classicOnly.push(cp.seq);
      algorithms.add(`${classicName(signer.cert)} (classic only)`);
    }
    signersUsed.add(cp.signerFingerprint);
    return null;
  };

  /** The seq whose content this record carries when it was moved (its hash fits another seq). */
  const movedFrom = (r: StoredAuditRecord): number | null => {
    for (const t of [r.seq + 1, r.seq - 1]) if (t >= 1 && hashOf(r, t) === r.hash) return t;
    const before = input.recordWithHash?.(r.prevHash);
    if (before !== undefined && before.seq + 1 !== r.seq && hashOf(r, before.seq + 1) === r.hash) return before.seq + 1;
    return null;
  };

  // Retention: every marker must be validly signed; the newest says where the log starts.
  const markers = [...(input.pruned ?? [])].sort((a, b) => a.seq - b.seq || a.ts - b.ts);
  if (markers.length > 0) {
    const hybridLog = checkpoints.some(isHybridCheckpoint) || markers.some((m) => (m.pqSignature ?? null) !== null);
    for (const m of markers) {
      const bad = pruneProblem(m, hybridLog);
      if (bad !== null) return result(bad);
    }
    const m = markers[markers.length - 1]!;
    pruned = { throughSeq: m.seq, hash: m.hash, headTs: m.headTs, prunedAt: m.ts };
    prev = { seq: m.seq, hash: m.hash };
    lastSignedSeq = m.seq;
    // Checkpoints over pruned records pin nothing that is kept: their signatures must still hold.
    for (; cpIndex < checkpoints.length && checkpoints[cpIndex]!.seq <= m.seq; cpIndex++) {
      const bad = signatureProblem(checkpoints[cpIndex]!);
      if (bad !== null) return result(bad);
    }
  }

  for (const r of input.records) {
    if (pruned !== null && r.seq <= pruned.throughSeq) {
      // The pruner deletes them with the marker in one transaction; left over, they are not evidence of anything.
      skippedBelowPrune++;
      continue;
    }
    records++;
    if (r.seq === lastSignedSeq + 1) unsignedFromTs = r.ts;
    const expected = prev === null ? 1 : prev.seq + 1;
    const own = checkHash(r);
    if (!own.ok) {
      const t = movedFrom(r);
      if (t !== null) return result({ kind: 'reordered', seq: Math.min(r.seq, t), message: `records ${Math.min(r.seq, t)} and ${Math.max(r.seq, t)} are out of order` });
      return result({ kind: 'altered', seq: r.seq, message: `record ${r.seq} was altered (hash mismatch)` });
    }
    const column = columnMismatch(r, own.event);
    if (column !== null) return result({ kind: 'altered', seq: r.seq, message: `record ${r.seq} was altered (its stored ${column} column does not match the hashed event)` });
    if (r.seq < expected) return result({ kind: 'reordered', seq: r.seq, message: `records ${prev?.seq ?? 0} and ${r.seq} are out of order` });
    if (r.seq > expected) {
      // The oldest records gone with no valid pruning marker: deleted, not retention.
      const why = expected === 1 ? `deleted; no signed pruning checkpoint covers ${expected === r.seq - 1 ? 'it' : 'them'}` : 'deleted';
      return result({ kind: 'missing', seq: expected, message: `${range(expected, r.seq - 1)} missing (${why})` });
    }
    if (r.prevHash !== (prev?.hash ?? GENESIS_HASH)) {
      // Intact and numbered in sequence, but not linked to its predecessor: the record
      // that stood here was removed and the next one re-hashed into its place.
      return result({ kind: 'missing', seq: r.seq, message: `record ${r.seq} is missing (deleted; the record now at seq ${r.seq} does not link to record ${r.seq - 1})` });
    }
    while (cpIndex < checkpoints.length && checkpoints[cpIndex]!.seq <= r.seq) {
      const cp = checkpoints[cpIndex++]!;
      const bad = signatureProblem(cp);
      if (bad !== null) return result(bad);
      if (cp.seq < r.seq) continue; // unreachable with continuous seqs from 1
      if (cp.hash !== r.hash) {
        const from = lastSignedSeq + 1;
        const message =
          from === r.seq
            ? `record ${r.seq} was altered and the chain re-hashed (checkpoint at seq ${cp.seq} does not match)`
            : `records ${from} to ${r.seq} were rewritten: one of them was altered, inserted or deleted and the chain re-hashed (checkpoint at seq ${cp.seq} does not match; checkpoint at seq ${lastSignedSeq} does)`;
        return result({ kind: 'rewritten', seq: from, message });
      }
      lastSignedSeq = r.seq;
    }
    prev = { seq: r.seq, hash: r.hash };
  }

  // Checkpoints past the last record: a valid one proves records were cut from the tail.
  for (; cpIndex < checkpoints.length; cpIndex++) {
    const cp = checkpoints[cpIndex]!;
    const bad = signatureProblem(cp);
    if (bad !== null) return result(bad);
    const last = prev?.seq ?? 0;
    return result({ kind: 'truncated', seq: last + 1, message: `${range(last + 1, cp.seq)} missing (the tail was cut: checkpoint at seq ${cp.seq} names a record that is not there)` });
  }

  if (skippedBelowPrune > 0) warnings.push(`${skippedBelowPrune} record(s) at or below the pruning point (seq ${pruned?.throughSeq ?? 0}) are still stored and were not checked`);
  const last = prev?.seq ?? 0;
  if (last > lastSignedSeq) {
    const what = `records after seq ${lastSignedSeq} are not covered by a checkpoint (${range(lastSignedSeq + 1, last)} hash-linked, not signed; the oldest from ${new Date(unsignedFromTs).toISOString()})`;
    if (input.strict === true) return result({ kind: 'unsigned', seq: lastSignedSeq + 1, message: `${what}: checkpoints were removed, or the broker did not stop cleanly` });
    warnings.push(`${what}: normal while the broker runs (a checkpoint follows within checkpointSeconds); after a clean stop it means checkpoints were removed`);
  }
  if (classicOnly.length > 0) {
    const n = classicOnly.length;
    const which = n === 1 ? `checkpoint at seq ${classicOnly[0]} has` : `${n} checkpoints (seq ${classicOnly[0]} to ${classicOnly[n - 1]}) have`;
    warnings.push(`${which} no post-quantum signature (classic-only, written before ML-DSA signing): they hold only as long as ${[...algorithms].filter((a) => !a.includes(' + ')).map((a) => a.replace(' (classic only)', '')).join(', ')} does`);
  }
  if (input.trustAnchorPem === undefined && signersUsed.size > 0) {
    warnings.push(`checkpoints are self-signed (signer ${[...signersUsed].join(', ')}): they hold only against someone who cannot also replace the signer; compare the fingerprint with the one the broker logged`);
  }
  return result(null);
}
