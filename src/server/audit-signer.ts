/**
 * The audit signer: the key that signs audit checkpoints, kept as
 * `<dataDir>/audit/signer.key` (0600) and `signer.crt`, and its ML-DSA-65 key
 * `signer-mldsa.key` (0600) for the post-quantum half of hybrid checkpoints. Owns: reusing
 * them, or making them once, the classic pair from the built-in PKI when the data
 * directory has one, self-signed otherwise; adding the ML-DSA key to a signer that has
 * none yet. Must not: sign checkpoints (security/audit/checkpoint.ts) or store records.
 *
 * The ML-DSA key has no certificate (X.509 stays ECDSA/RSA: OpenSSL 3.0 peers cannot
 * verify ML-DSA certificates); every hybrid checkpoint's ECDSA signature covers its
 * fingerprint, which binds it to the PKI-issued certificate (checkpoint.ts).
 *
 * Profile: the PKI issues it with the `client` profile (digitalSignature, P-256, CN
 * `bastion-audit-signer`, OU `audit`). A dedicated profile would also need a new
 * certificate kind in the PKI inventory's schema; the client profile's clientAuth EKU
 * gives whoever reads signer.key no more than they already have: the key sits in the
 * same data directory as the issuing intermediate's key, which can issue any client
 * certificate.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { certificateToPem } from '../pki/ca.js';
import { HYBRID_SIGNATURES, ML_DSA_65, exportMlDsaPrivateKeyPem, generateMlDsaKeyPair, importMlDsaPrivateKey } from '../pki/hybrid-signature.js';
import { exportPrivateKeyPem, generateKeyPair, signingAlgorithmFor } from '../pki/keys.js';
import { buildSubject } from '../pki/names.js';
import { randomSerialNumber } from '../pki/serial.js';
import { validityWindow } from '../pki/validity.js';
import { x509 } from '../pki/x509.js';
import { loadAuditSigner, type AuditSigner } from '../security/audit/checkpoint.js';
import { CERT_MODE, KEY_MODE, checkKeyMode, ensurePrivateDir, isErrno, isRegularFile, writeNewFileAtomic } from './pki-files.js';
import { pkiDirOf, pkiLayout } from './pki-layout.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import { PkiService } from './pki-service.js';

export const AUDIT_SIGNER_COMMON_NAME = 'bastion-audit-signer';
/** Lifetime asked for (the PKI caps it at its intermediate's). Verify ignores expiry: a checkpoint stays valid. */
const SIGNER_DAYS = 3650;

export interface AuditSignerFiles {
  readonly signer: AuditSigner;
  /** True without a built-in PKI: the certificate vouches for nothing but itself. */
  readonly selfSigned: boolean;
  readonly keyPath: string;
  readonly certPath: string;
  /** The ML-DSA-65 key (`signer-mldsa.key`). */
  readonly pqKeyPath: string;
  /** Logs the self-signed warning (when it applies); called once the server started. */
  announce(): void;
}

export function auditDirOf(dataDir: string): string {
  return join(dataDir, 'audit');
}

function signerError(message: string): BastionError {
  return new BastionError('ERR_AUDIT_SIGNER', message);
}

/** A P-256 key and a self-signed certificate for it (digitalSignature only, not a CA). */
async function selfSigned(now: Date): Promise<{ keyPem: string; certPem: string }> {
  const keys = await generateKeyPair('ec-p256');
  const { notBefore, notAfter } = validityWindow(SIGNER_DAYS, now);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: buildSubject(AUDIT_SIGNER_COMMON_NAME, 'audit (self-signed)'),
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: signingAlgorithmFor('ec-p256'),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await exportPrivateKeyPem(keys.privateKey), certPem: certificateToPem(cert) };
}

/**
 * Loads `<dataDir>/audit/signer.{key,crt}`, or creates them: issued by the built-in PKI
 * (`<dataDir>/pki`) when there is one and it can issue, self-signed (logged at warn)
 * otherwise. Half a pair is refused rather than replaced: checkpoints may depend on it.
 */
export async function ensureAuditSigner(dataDir: string, logger: Logger, now: Date = new Date()): Promise<AuditSignerFiles> {
  const dir = auditDirOf(dataDir);
  const keyPath = join(dir, 'signer.key');
  const certPath = join(dir, 'signer.crt');
  const pqKeyPath = join(dir, 'signer-mldsa.key');
  await ensurePrivateDir(dir);
  const [hasKey, hasCert] = [await isRegularFile(keyPath), await isRegularFile(certPath)];
  const hasPki = await isRegularFile(pkiLayout(pkiDirOf(dataDir)).rootCert);
  if (hasKey !== hasCert) {
    throw signerError(`the audit signer in ${dir} is incomplete: found ${hasKey ? keyPath : certPath} but not ${hasKey ? certPath : keyPath}; restore it, or move it away to make a new signer`);
  }
  let selfSignedNow = false;
  if (!hasKey) {
    let issued = false;
    if (hasPki) {
      let service: PkiService | null = null;
      try {
        service = await PkiService.open(pkiDirOf(dataDir), { passphrase: rootKeyPassphraseFromEnv() });
        await service.issue({ profile: 'client', commonName: AUDIT_SIGNER_COMMON_NAME, organizationalUnit: 'audit', outDir: dir, fileStem: 'signer', days: SIGNER_DAYS, now });
        issued = true;
        logger.info({ certPath }, 'audit signer certificate issued by the built-in PKI');
      } catch (err) {
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot issue the audit signer from the built-in PKI; falling back to a self-signed signer');
      } finally {
        service?.close();
      }
    }
    if (!issued) {
      const made = await selfSigned(now);
      await writeNewFileAtomic(keyPath, made.keyPem, KEY_MODE);
      await writeNewFileAtomic(certPath, made.certPem, CERT_MODE);
      selfSignedNow = true;
    }
  }
  await checkKeyMode(keyPath);
  // The ML-DSA half: made with a new signer, and added to one from before hybrid checkpoints.
  let pqCreated = false;
  if (!(await isRegularFile(pqKeyPath))) {
    try {
      await writeNewFileAtomic(pqKeyPath, exportMlDsaPrivateKeyPem(generateMlDsaKeyPair().privateKey), KEY_MODE);
      pqCreated = true;
    } catch (err) {
      // Another process made it first: use that one.
      if (!isErrno(err, 'EEXIST')) throw err;
    }
  }
  await checkKeyMode(pqKeyPath);
  let signer: AuditSigner;
  try {
    const pqKeyPem = await readFile(pqKeyPath, 'utf8');
    importMlDsaPrivateKey(pqKeyPem);
    signer = loadAuditSigner(await readFile(keyPath, 'utf8'), await readFile(certPath, 'utf8'), { keyPem: pqKeyPem, scheme: HYBRID_SIGNATURES });
  } catch (err) {
    throw signerError(`cannot load the audit signer (${keyPath}, ${certPath}, ${pqKeyPath}): ${err instanceof Error ? err.message : String(err)}`);
  }
  if (pqCreated) {
    const pq = { pqKeyPath, pqFingerprint: signer.pq?.fingerprint };
    // The fingerprint is logged once, here: it is what to compare `verify --json` pqKeysUsed with.
    if (hasKey) logger.info(pq, `${ML_DSA_65} key added to the existing audit signer: new checkpoints are signed with ECDSA and ${ML_DSA_65}; earlier checkpoints stay classic-only`);
    else logger.info(pq, `audit signer ${ML_DSA_65} key created`);
  }
  const selfSignedCert = isSelfSigned(signer.certPem);
  const announce = (): void => {
    if (!selfSignedCert) return;
    // SECURITY: a self-signed signer proves the log unchanged only to someone who trusts
    // this fingerprint; anyone able to replace audit/ could re-sign a rewritten log.
    logger.warn(
      { fingerprint: signer.fingerprint, created: selfSignedNow, pki: hasPki },
      hasPki
        ? 'audit checkpoints are signed by a self-signed key although a built-in PKI exists: `bastion audit verify` will reject them; move audit/signer.* away and restart to get a PKI-issued signer'
        : 'audit checkpoints are self-signed (no built-in PKI in the data directory): note this fingerprint to check `bastion audit verify` against',
    );
  };
  return { signer, selfSigned: selfSignedCert, keyPath, certPath, pqKeyPath, announce };
}

function isSelfSigned(certPem: string): boolean {
  const leaf = new x509.X509Certificate(certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0] ?? certPem);
  return leaf.subject === leaf.issuer;
}
