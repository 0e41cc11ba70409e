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
 */
import { X509Certificate, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';

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
}

/** The key that signs checkpoints and its certificate (leaf first, then any chain). */
export interface AuditSigner {
  readonly key: KeyObject;
  readonly certPem: string;
  readonly fingerprint: string;
}

/** What a checkpoint signature covers. */
export function checkpointMessage(seq: number, hash: string, ts: number): string {
  return `bastion-audit-checkpoint-v1\n${seq}\n${hash}\n${ts}`;
}

/** The PEM certificates of a bundle, in order. */
export function splitCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Builds a signer from PEM files, refusing a key that does not belong to the certificate
 * (a mixed-up pair would sign checkpoints nobody can verify).
 */
export function loadAuditSigner(keyPem: string, certPem: string): AuditSigner {
  const key = createPrivateKey(keyPem);
  const leafPem = splitCertificates(certPem)[0];
  if (leafPem === undefined) throw new Error('the signer certificate file holds no certificate');
  const leaf = new X509Certificate(leafPem);
  if (!leaf.checkPrivateKey(key)) throw new Error('the signer key does not match the signer certificate');
  return { key, certPem, fingerprint: leaf.fingerprint256 };
}

export function signCheckpoint(signer: AuditSigner, seq: number, hash: string, ts: number): AuditCheckpoint {
  const signature = sign('sha256', Buffer.from(checkpointMessage(seq, hash, ts)), signer.key).toString('base64');
  return { seq, hash, ts, signature, signerFingerprint: signer.fingerprint };
}

/** True when `cp.signature` is a valid signature by the leaf of `signerCertPem`. */
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
