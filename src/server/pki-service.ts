/**
 * The PKI service: the one place that changes PKI state in the data directory. Owns:
 * creating the root and intermediate CAs, moving the root key off the machine, issuing
 * and signing certificates (recorded in the inventory), revoking them (the CRL is
 * re-signed at once), and the settings (OCSP URL). The CLI, the zero-config start and
 * the broker (CRL renewal, OCSP) all go through it.
 * Must not: print or parse command lines (cli/ does), or keep CA keys in memory between
 * operations (each operation reads the files, so a change by another process is seen).
 */
import { unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import {
  createIntermediateCa,
  createRootCa,
  describeCertificate,
  encryptPrivateKeyPem,
  issueCertificate,
  signCsr,
  type CertificateProfile,
  type KeyAlgorithm,
  type RevocationReason,
  type SubjectAltName,
} from '../pki/index.js';
import {
  PkiInventory,
  type CertificateKind,
  type InventoryFilter,
  type InventoryRecord,
  type NewInventoryRecord,
} from '../store/sqlite/pki-inventory.js';
import { assertCaExists, hasIntermediate, loadIssuingCa, loadRoot, readText, rootKeyOnline, rootKeyOfflineError, type RootKeyAccess } from './pki-ca-store.js';
import { regenerateCrl, renewCrlIfDue, type CrlRenewal, type CrlWriteResult, type RootCrlPolicy } from './pki-crl.js';
import { CERT_MODE, KEY_MODE, ensurePrivateDir, isErrno, isRegularFile, syncDir, writeFileAtomic, writeNewFileAtomic } from './pki-files.js';
import { fileStemFor, pkiLayout, type PkiLayout } from './pki-layout.js';

const OCSP_URL_SETTING = 'ocsp.url';

export interface InitCaOptions {
  readonly commonName: string;
  readonly keyAlgorithm?: KeyAlgorithm;
  readonly days?: number;
  /** Encrypts root.key (PKCS#8, scrypt/AES) when given. */
  readonly rootKeyPassphrase?: string | undefined;
  readonly now?: Date;
}

export interface IntermediateOptions {
  readonly commonName: string;
  readonly keyAlgorithm?: KeyAlgorithm;
  readonly days?: number;
  readonly now?: Date;
}

export interface IssueOptions {
  readonly profile: CertificateProfile;
  readonly commonName: string;
  readonly organizationalUnit?: string | undefined;
  readonly sans?: readonly SubjectAltName[];
  readonly days?: number | undefined;
  readonly keyAlgorithm?: KeyAlgorithm | undefined;
  /** Directory for `<stem>.crt` / `<stem>.key`; default `pki/issued/`. */
  readonly outDir?: string | undefined;
  /** File name stem; default derived from the commonName. */
  readonly fileStem?: string | undefined;
  /** OCSP responder URL for the AIA extension; default the stored setting. */
  readonly ocspUrl?: string | undefined;
  readonly now?: Date;
}

export interface IssuedFiles {
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly notAfter: Date;
  /** Leaf followed by the intermediate (when one issues); never the root. */
  readonly certPath: string;
  readonly keyPath: string;
}

/** A certificate issued without files: its chain, its key and the root a peer trusts. */
export interface IssuedBundle {
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly commonName: string;
  readonly notAfter: Date;
  /** Leaf followed by the intermediate (when one issues). */
  readonly certPem: string;
  readonly keyPem: string;
  /** The root CA certificate. */
  readonly caPem: string;
}

export interface SignCsrOptions {
  readonly csrPem: string;
  readonly profile: CertificateProfile;
  readonly days?: number | undefined;
  readonly ocspUrl?: string | undefined;
  readonly now?: Date;
  /** Certify this identity instead of the CSR's subject (device provisioning). */
  readonly identity?: { readonly commonName: string; readonly organizationalUnits: readonly string[]; readonly sans: readonly SubjectAltName[] } | undefined;
}

export interface SignedCsr {
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly commonName: string;
  /** Leaf followed by the intermediate (when one issues). */
  readonly certPem: string;
  readonly notAfter: Date;
}

export type RevokeResult =
  | { readonly result: 'revoked'; readonly record: InventoryRecord; readonly crlPath: string }
  | { readonly result: 'already-revoked'; readonly record: InventoryRecord };

export interface PkiStatus {
  readonly root: InventoryRecord | undefined;
  readonly intermediate: InventoryRecord | undefined;
  readonly rootKeyOnline: boolean;
  readonly ocspUrl: string | undefined;
}

/** Inventory row for a certificate, from the certificate itself. */
function recordOf(certPem: string, kind: CertificateKind, issuerSerial: string | null, now: Date): NewInventoryRecord {
  const d = describeCertificate(certPem);
  const sans = [
    ...d.sans.dns.map((v) => `DNS:${v}`),
    ...d.sans.ip.map((v) => `IP:${v}`),
    ...d.sans.uri.map((v) => `URI:${v}`),
    ...d.sans.email.map((v) => `email:${v}`),
  ];
  return {
    serialNumber: d.serialNumber,
    kind,
    issuerSerial,
    subject: d.subject,
    commonName: d.commonName ?? '',
    sans,
    fingerprint256: d.fingerprint256,
    notBefore: d.notBefore,
    notAfter: d.notAfter,
    certPem,
    issuedAt: now,
  };
}

export class PkiService {
  private constructor(
    readonly layout: PkiLayout,
    readonly inventory: PkiInventory,
    private readonly access: RootKeyAccess,
  ) {}

  /** Opens the PKI in `pkiDir`; ERR_PKI_NO_CA when no CA was created there. */
  static async open(pkiDir: string, access: RootKeyAccess = {}): Promise<PkiService> {
    const layout = pkiLayout(pkiDir);
    await assertCaExists(layout);
    return new PkiService(layout, PkiInventory.open(layout.inventory), access);
  }

  /**
   * Creates the root CA (pathLength 1, so it can sign one level of intermediates), the
   * inventory and the first CRL. Refuses (ERR_PKI_CA_EXISTS) when a CA is already there.
   */
  static async init(pkiDir: string, options: InitCaOptions): Promise<PkiService> {
    const layout = pkiLayout(pkiDir);
    await ensurePrivateDir(layout.dir);
    for (const path of [layout.rootCert, layout.rootKey, layout.intermediateCert]) {
      if (await isRegularFile(path)) {
        throw new BastionError('ERR_PKI_CA_EXISTS', `a CA already exists in ${layout.dir} (${path}); refusing to overwrite it (certificates may chain to it)`);
      }
    }
    const now = options.now ?? new Date();
    const root = await createRootCa({
      commonName: options.commonName,
      pathLength: 1,
      now,
      ...(options.keyAlgorithm !== undefined ? { keyAlgorithm: options.keyAlgorithm } : {}),
      ...(options.days !== undefined ? { days: options.days } : {}),
    });
    const keyPem = options.rootKeyPassphrase !== undefined ? await encryptPrivateKeyPem(root.keyPem, options.rootKeyPassphrase) : root.keyPem;
    const inventory = PkiInventory.open(layout.inventory);
    const service = new PkiService(layout, inventory, { passphrase: options.rootKeyPassphrase });
    try {
      // Key first, certificate last: root.crt is what marks "a CA exists here".
      await writeNewFileAtomic(layout.rootKey, keyPem, KEY_MODE);
      await writeNewFileAtomic(layout.rootCert, root.certPem, CERT_MODE);
      inventory.add(recordOf(root.certPem, 'root', null, now));
      await service.writeChain();
      await regenerateCrl(service.crlContext(), now, 'required');
    } catch (err) {
      inventory.close();
      if (isErrno(err, 'EEXIST')) throw new BastionError('ERR_PKI_CA_EXISTS', `a CA is being created in ${layout.dir} by another process`);
      throw err;
    }
    return service;
  }

  private crlContext(): { layout: PkiLayout; inventory: PkiInventory; access: RootKeyAccess } {
    return { layout: this.layout, inventory: this.inventory, access: this.access };
  }

  /** `ca-chain.crt`: intermediate (when there is one) followed by the root. */
  private async writeChain(): Promise<void> {
    const root = await readText(this.layout.rootCert);
    const intermediate = (await hasIntermediate(this.layout)) ? await readText(this.layout.intermediateCert) : '';
    await writeFileAtomic(this.layout.caChain, intermediate + root, CERT_MODE);
  }

  private rootSerial(): string | undefined {
    return this.inventory.list({ kinds: ['root'] })[0]?.serialNumber;
  }

  async status(): Promise<PkiStatus> {
    const [root] = this.inventory.list({ kinds: ['root'] });
    const intermediates = this.inventory.list({ kinds: ['intermediate'] });
    return {
      root,
      intermediate: intermediates[intermediates.length - 1],
      rootKeyOnline: await rootKeyOnline(this.layout, this.access),
      ocspUrl: this.getOcspUrl(),
    };
  }

  /**
   * Creates the intermediate CA, signed by the root; from then on it issues and the root
   * key can go offline. One intermediate per PKI: replacing it would orphan the CRL of
   * the certificates the old one issued, so a second call is refused (ERR_PKI_CA_EXISTS).
   */
  async createIntermediate(options: IntermediateOptions): Promise<InventoryRecord> {
    const now = options.now ?? new Date();
    const root = await loadRoot(this.layout, this.access, 'creating an intermediate CA');
    if (await hasIntermediate(this.layout)) {
      throw new BastionError('ERR_PKI_CA_EXISTS', `an intermediate CA already exists (${this.layout.intermediateCert}); one intermediate per PKI is supported`);
    }
    const created = await createIntermediateCa({
      root,
      commonName: options.commonName,
      now,
      ...(options.keyAlgorithm !== undefined ? { keyAlgorithm: options.keyAlgorithm } : {}),
      ...(options.days !== undefined ? { days: options.days } : {}),
    });
    await writeNewFileAtomic(this.layout.intermediateKey, created.keyPem, KEY_MODE);
    await writeNewFileAtomic(this.layout.intermediateCert, created.certPem, CERT_MODE);
    this.inventory.add(recordOf(created.certPem, 'intermediate', describeCertificate(root.certPem).serialNumber, now));
    await this.writeChain();
    // The chain now has two CA certificates, so crl.pem needs both CRLs (see pki-crl.ts).
    await regenerateCrl(this.crlContext(), now, 'required');
    return this.inventory.get(created.serialNumber)!;
  }

  /**
   * Moves root.key to `outDir` (which must not hold a root.key) and removes it here.
   * SECURITY: the copy is written and flushed (0600) before the original is deleted.
   */
  async exportRootKey(outDir: string): Promise<string> {
    if (!(await isRegularFile(this.layout.rootKey))) throw rootKeyOfflineError(this.layout, 'exporting the root key');
    if (!(await hasIntermediate(this.layout))) {
      throw new BastionError('ERR_PKI_NO_INTERMEDIATE', 'create an intermediate CA first (`bastion ca intermediate --cn NAME`): without it nothing could issue once the root key is gone');
    }
    const target = join(resolve(outDir), 'root.key');
    await ensurePrivateDir(resolve(outDir));
    try {
      await writeNewFileAtomic(target, await readText(this.layout.rootKey), KEY_MODE);
    } catch (err) {
      if (isErrno(err, 'EEXIST')) throw new BastionError('ERR_PKI_FILES', `${target} already exists; choose another --out directory`);
      throw err;
    }
    await unlink(this.layout.rootKey);
    await syncDir(this.layout.dir);
    return target;
  }

  getOcspUrl(): string | undefined {
    return this.inventory.getSetting(OCSP_URL_SETTING);
  }

  /** Stores the OCSP URL put into certificates issued from now on (null clears it). */
  setOcspUrl(url: string | null): void {
    if (url !== null) assertHttpUrl(url);
    this.inventory.setSetting(OCSP_URL_SETTING, url);
  }

  /** Issues a key pair and certificate, writes `<stem>.crt` (with chain) and `<stem>.key`, records it. */
  async issue(options: IssueOptions): Promise<IssuedFiles> {
    const outDir = resolve(options.outDir ?? this.layout.issuedDir);
    const stem = options.fileStem ?? fileStemFor(options.commonName);
    const certPath = join(outDir, `${stem}.crt`);
    const keyPath = join(outDir, `${stem}.key`);
    await ensurePrivateDir(outDir);
    for (const path of [certPath, keyPath]) {
      if (await isRegularFile(path)) throw new BastionError('ERR_PKI_FILES', `${path} already exists; refusing to replace it (choose --out, or move it away)`);
    }
    const issued = await this.issueBundle(options);
    await writeNewFileAtomic(keyPath, issued.keyPem, KEY_MODE);
    await writeNewFileAtomic(certPath, issued.certPem, CERT_MODE);
    return { serialNumber: issued.serialNumber, fingerprint256: issued.fingerprint256, notAfter: issued.notAfter, certPath, keyPath };
  }

  /**
   * Issues a key pair and certificate and records it, writing no file: the caller hands the
   * bundle over (the admin API's download) and keeps no copy of the key.
   */
  async issueBundle(options: IssueOptions): Promise<IssuedBundle> {
    const now = options.now ?? new Date();
    const ocspUrl = options.ocspUrl ?? this.getOcspUrl();
    if (ocspUrl !== undefined) assertHttpUrl(ocspUrl);
    const ca = await loadIssuingCa(this.layout, this.access, 'issuing a certificate');
    const issued = await issueCertificate({
      ca: ca.material,
      profile: options.profile,
      commonName: options.commonName,
      now,
      ...(options.organizationalUnit !== undefined ? { organizationalUnit: options.organizationalUnit } : {}),
      ...(options.sans !== undefined ? { sans: options.sans } : {}),
      ...(options.days !== undefined ? { days: options.days } : {}),
      ...(options.keyAlgorithm !== undefined ? { keyAlgorithm: options.keyAlgorithm } : {}),
      ...(ocspUrl !== undefined ? { ocspUrl } : {}),
    });
    // Recorded before it is handed out: a certificate that exists must be revocable by serial.
    const record = recordOf(issued.certPem, options.profile, describeCertificate(ca.material.certPem).serialNumber, now);
    this.inventory.add(record);
    return { serialNumber: issued.serialNumber, fingerprint256: issued.fingerprint256, commonName: record.commonName, notAfter: record.notAfter, certPem: issued.certPem + ca.chainPem, keyPem: issued.keyPem, caPem: await readText(this.layout.rootCert) };
  }

  /** Signs a CSR (its key never leaves the device) and records the certificate. */
  async signCsr(options: SignCsrOptions): Promise<SignedCsr> {
    const now = options.now ?? new Date();
    const ocspUrl = options.ocspUrl ?? this.getOcspUrl();
    if (ocspUrl !== undefined) assertHttpUrl(ocspUrl);
    const ca = await loadIssuingCa(this.layout, this.access, 'signing a CSR');
    const signed = await signCsr({
      ca: ca.material,
      csrPem: options.csrPem,
      profile: options.profile,
      now,
      ...(options.days !== undefined ? { days: options.days } : {}),
      ...(ocspUrl !== undefined ? { ocspUrl } : {}),
      ...(options.identity !== undefined ? { identity: options.identity } : {}),
    });
    const record = recordOf(signed.certPem, options.profile, describeCertificate(ca.material.certPem).serialNumber, now);
    this.inventory.add(record);
    return { serialNumber: signed.serialNumber, fingerprint256: signed.fingerprint256, commonName: record.commonName, certPem: signed.certPem + ca.chainPem, notAfter: record.notAfter };
  }

  /**
   * Marks a certificate revoked and re-signs `crl.pem` at once (atomically replaced, so a
   * broker watching it drops the device). Revoking an intermediate needs the root key and
   * is refused before anything changes when it is offline. Unknown serial: ERR_PKI_UNKNOWN_SERIAL.
   */
  async revoke(serialNumber: string, reason: RevocationReason | undefined, now: Date = new Date()): Promise<RevokeResult> {
    const existing = this.inventory.get(serialNumber);
    if (existing === undefined) throw new BastionError('ERR_PKI_UNKNOWN_SERIAL', `no certificate with serial ${serialNumber} in the inventory (see \`bastion cert list\`)`);
    if (existing.kind === 'root') throw new BastionError('ERR_PKI_INVALID_INPUT', 'the root CA cannot be revoked; remove it from the trust stores instead');
    let rootPolicy: RootCrlPolicy = 'when-online';
    if (existing.kind === 'intermediate' || existing.issuerSerial === this.rootSerial()) {
      if (existing.status === 'valid') await loadRoot(this.layout, this.access, 'revoking a certificate the root signed');
      rootPolicy = 'required';
    }
    const outcome = this.inventory.revoke(existing.serialNumber, now, reason ?? null);
    if (outcome.result === 'unknown') throw new BastionError('ERR_PKI_UNKNOWN_SERIAL', `no certificate with serial ${serialNumber}`);
    if (outcome.result === 'already-revoked') return { result: 'already-revoked', record: outcome.record };
    const crl = await regenerateCrl(this.crlContext(), now, rootPolicy);
    return { result: 'revoked', record: outcome.record, crlPath: crl.path };
  }

  list(filter: InventoryFilter = {}): InventoryRecord[] {
    return this.inventory.list(filter);
  }

  /** One certificate by serial; ERR_PKI_UNKNOWN_SERIAL when there is none. */
  show(serialNumber: string): InventoryRecord {
    const record = this.inventory.get(serialNumber);
    if (record === undefined) throw new BastionError('ERR_PKI_UNKNOWN_SERIAL', `no certificate with serial ${serialNumber} in the inventory (see \`bastion cert list\`)`);
    return record;
  }

  /** Re-signs `crl.pem` now (the root CRL too when the root key is at hand). */
  writeCrl(now: Date = new Date()): Promise<CrlWriteResult> {
    return regenerateCrl(this.crlContext(), now, 'when-online');
  }

  /** Re-signs the CRLs past half their lifetime (the broker runs this hourly). */
  renewCrlIfDue(now: Date = new Date()): Promise<CrlRenewal> {
    return renewCrlIfDue(this.crlContext(), now);
  }

  close(): void {
    this.inventory.close();
  }
}

/** SECURITY: only http(s) URLs go into certificates (OCSP is plain HTTP by design, RFC 6960 A.1). */
export function assertHttpUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BastionError('ERR_PKI_INVALID_INPUT', `invalid OCSP URL ${JSON.stringify(url)}; expected http://host:port/`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new BastionError('ERR_PKI_INVALID_INPUT', `OCSP URL must be http or https, got ${JSON.stringify(url)}`);
  }
}
