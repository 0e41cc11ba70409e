/**
 * Signed checkpoints of the audit chain. Owns: the bytes a checkpoint signature covers,
 * signing them with the audit signer key, checking a signature against a signer
 * certificate, and checking that a signer certificate chains to a trust anchor.
 * Must not: read or write keys, certificates or records (server/ and store/ do).
 *
 * SECURITY: a checkpoint pins (seq, hash) of one record. Every record before it is bound
 * to that hash through the chain, so rewriting any of them (even re-computing every hash
 * after an edit) no longer matches the signed hash, and only the holder of the signer key
 * can sign a new one.
 *
 * Two forms. v1 (classic only): ECDSA over checkpointMessage(). v2 (hybrid, what a signer
 * with an ML-DSA key writes): the hybrid scheme of pki/hybrid-signature.ts under the
 * context CHECKPOINT_CONTEXT_V2, both halves over hybridCheckpointMessage().
 *
 * SECURITY: binding the ML-DSA key. Certificates stay ECDSA/RSA (OpenSSL 3.0 peers cannot
 * verify ML-DSA ones), so the ML-DSA public key has no certificate of its own; it is named
 * by its SHA-256 fingerprint (over its SPKI DER), stored beside the checkpoints, and that
 * fingerprint is inside the message the PKI-certified ECDSA key signs (with the signer
 * certificate's fingerprint, in the other direction). Swapping the ML-DSA key, even with
 * every ML-DSA signature re-made by the new key, changes the fingerprint and breaks every
 * ECDSA signature; a stored key that does not hash to its fingerprint is refused. This
 * ties the key to the PKI for as long as ECDSA holds. Once ECDSA can be forged, the ECDSA
 * half no longer vouches for the key (a forger could sign a swapped fingerprint as well);
 * then the ML-DSA key is trusted by its fingerprint alone: compare it (`verify --json`:
 * pqKeysUsed) with the one the broker logged when it made the key, as one does for a
 * self-signed signer. A v2 checkpoint stripped to
 * v1 fails (its ECDSA signature covers the framed v2 bytes, not the v1 message), and a
 * classic-only checkpoint after a hybrid one is refused as a downgrade (verify.ts).
 */
import { X509Certificate, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export interface AuditCheckpoint {
  /** The seq of the record it pins. */
  seq: number;
  /** That record's hash. */
  hash: string;
  /** ms since the epoch, when it was signed. */
  ts: number;
  /** Base64 DER ECDSA signature over checkpointMessage(seq, hash, ts). */
  signature: string;
  /** SHA-256 fingerprint (`AB:CD:…`) of the signer certificate. */
  signerFingerprint: string;
  /** v2 (hybrid): base64 ML-DSA signature over the same bytes as `signature`. Null or absent on v1. */
  pqSignature?: string | null | undefined;
  /** v2 (hybrid): SHA-256 fingerprint of the ML-DSA public key's SPKI DER. Null or absent on v1. */
  pqKeyFingerprint?: string | null | undefined;
}

/**
 * The hybrid signature scheme, i.e. HYBRID_SIGNATURES of pki/hybrid-signature.ts. Passed
 * in by server/ and cli/: security/ may not import pki/.
 */
export interface HybridScheme {
  sign(context: string, message: string, keys: { classic: KeyObject; pq: KeyObject }): { classic: string; pq: string; classicAlg: string; pqAlg: string };
  verify(context: string, message: string, sig: { classic: string; pq: string }, keys: { classicPublic: KeyObject; pqPublic: KeyObject }): { ok: boolean; classic: boolean; pq: boolean; classicAlg: string; pqAlg: string };
  fingerprint(publicKey: KeyObject): string;
  classicAlgorithm(publicKey: KeyObject): string;
}

/** The ML-DSA half of a hybrid audit signer. */
export interface AuditPqKey {
  readonly key: KeyObject;
  readonly publicKeyPem: string;
  readonly fingerprint: string;
  readonly scheme: HybridScheme;
}

/** The key that signs checkpoints and its certificate (leaf first, then any chain), and its ML-DSA key when hybrid. */
export interface AuditSigner {
  readonly key: KeyObject;
  readonly certPem: string;
  readonly fingerprint: string;
  /** Present: checkpoints are hybrid (v2). Absent: classic only (v1). */
  readonly pq?: AuditPqKey | undefined;
}

/** What a v1 (classic-only) checkpoint signature covers. */
export function checkpointMessage(seq: number, hash: string, ts: number): string {
  return `bastion-audit-checkpoint-v1\n${seq}\n${hash}\n${ts}`;
}

/** The hybrid scheme's context for v2 checkpoints (it frames the message with it). */
export const CHECKPOINT_CONTEXT_V2 = 'bastion-audit-checkpoint-v2';

/** What both halves of a v2 (hybrid) checkpoint signature cover, under CHECKPOINT_CONTEXT_V2. */
export function hybridCheckpointMessage(seq: number, hash: string, ts: number, signerFingerprint: string, pqKeyFingerprint: string): string {
  return `${seq}\n${hash}\n${ts}\n${signerFingerprint}\n${pqKeyFingerprint}`;
}

/** True when `cp` is in the hybrid (v2) form, or claims to be (either column set). */
export function isHybridCheckpoint(cp: AuditCheckpoint): boolean {
  return (cp.pqSignature ?? null) !== null || (cp.pqKeyFingerprint ?? null) !== null;
}

/** The PEM certificates of a bundle, in order. */
export function splitCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Builds a signer from PEM files, refusing a key that does not belong to the certificate
 * (a mixed-up pair would sign checkpoints nobody can verify).
 */
export function loadAuditSigner(keyPem: string, certPem: string, pq?: { keyPem: string; scheme: HybridScheme }): AuditSigner {
  const key = createPrivateKey(keyPem);
  const leafPem = splitCertificates(certPem)[0];
  if (leafPem === undefined) throw new Error('the signer certificate file holds no certificate');
  const leaf = new X509Certificate(leafPem);
  if (!leaf.checkPrivateKey(key)) throw new Error('the signer key does not match the signer certificate');
  if (pq === undefined) return { key, certPem, fingerprint: leaf.fingerprint256 };
  const pqKey = createPrivateKey(pq.keyPem);
  const pqPublic = createPublicKey(pqKey);
  // A classic key the scheme cannot sign with fails here, at load, not at the first checkpoint.
  pq.scheme.classicAlgorithm(leaf.publicKey);
  return {
    key,
    certPem,
    fingerprint: leaf.fingerprint256,
    pq: { key: pqKey, publicKeyPem: pqPublic.export({ type: 'spki', format: 'pem' }) as string, fingerprint: pq.scheme.fingerprint(pqPublic), scheme: pq.scheme },
  };
}

/** A checkpoint over (seq, hash) at `ts`: hybrid (v2) when the signer has an ML-DSA key, classic (v1) otherwise. */
export function signCheckpoint(signer: AuditSigner, seq: number, hash: string, ts: number): AuditCheckpoint {
  if (signer.pq !== undefined) {
    const { pq } = signer;
    const sig = pq.scheme.sign(CHECKPOINT_CONTEXT_V2, hybridCheckpointMessage(seq, hash, ts, signer.fingerprint, pq.fingerprint), { classic: signer.key, pq: pq.key });
    return { seq, hash, ts, signature: sig.classic, signerFingerprint: signer.fingerprint, pqSignature: sig.pq, pqKeyFingerprint: pq.fingerprint };
  }
  const signature = sign('sha256', Buffer.from(checkpointMessage(seq, hash, ts)), signer.key).toString('base64');
  return { seq, hash, ts, signature, signerFingerprint: signer.fingerprint, pqSignature: null, pqKeyFingerprint: null };
}

/**
 * Checks both halves of a v2 checkpoint: the classic one by the leaf of the signer
 * certificate, the ML-DSA one by `pqPublic` (the caller has checked that it hashes to
 * `cp.pqKeyFingerprint`). Each half on its own, with the algorithm names.
 */
export function verifyHybridCheckpoint(cp: AuditCheckpoint, signerCert: X509Certificate, pqPublic: KeyObject, scheme: HybridScheme): { classic: boolean; pq: boolean; classicAlg: string; pqAlg: string } {
  const message = hybridCheckpointMessage(cp.seq, cp.hash, cp.ts, cp.signerFingerprint, cp.pqKeyFingerprint ?? '');
  const r = scheme.verify(CHECKPOINT_CONTEXT_V2, message, { classic: cp.signature, pq: cp.pqSignature ?? '' }, { classicPublic: signerCert.publicKey, pqPublic });
  return { classic: r.classic, pq: r.pq, classicAlg: r.classicAlg, pqAlg: r.pqAlg };
}

/** True when `cp.signature` is a valid v1 (classic-only) signature by the leaf of `signerCertPem`. */
export function verifyCheckpointSignature(cp: AuditCheckpoint, signerCert: X509Certificate): boolean {
  try {
    return verify('sha256', Buffer.from(checkpointMessage(cp.seq, cp.hash, cp.ts)), signerCert.publicKey, Buffer.from(cp.signature, 'base64'));
  } catch {
    // A malformed signature (not DER) is a bad signature, not a crash.
    return false;
  }
}

/**
 * True when the leaf of `certPem` chains to `anchorPem` through the certificates that
 * follow it in `certPem` (each issued and signed by the next, the last by the anchor).
 * Validity dates are not checked: a checkpoint signed while the certificate was valid
 * stays verifiable after it expires.
 */
export function chainsToAnchor(certPem: string, anchorPem: string): boolean {
  try {
    const anchor = new X509Certificate(anchorPem);
    const chain = splitCertificates(certPem).map((p) => new X509Certificate(p));
    if (chain.length === 0) return false;
    for (let i = 0; i < chain.length; i++) {
      const cert = chain[i]!;
      if (cert.fingerprint256 === anchor.fingerprint256) return i > 0;
      const issuer = chain[i + 1] ?? anchor;
      if (cert.checkIssued(issuer) === false || !cert.verify(issuer.publicKey)) {
        // The bundle may end before the anchor (leaf + intermediate): try the anchor directly.
        if (issuer !== anchor && cert.checkIssued(anchor) && cert.verify(anchor.publicKey)) return true;
        return false;
      }
      if (issuer === anchor) return true;
    }
    return false;
  } catch {
    return false;
  }
}
