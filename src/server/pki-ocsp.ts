/**
 * The OCSP authority over the PKI directory: answers a DER OCSP request from the live
 * inventory (a revocation is visible on the very next request), signed by the CA that
 * issued the certificate asked about (intermediate or root). Also starts the HTTP
 * responder with it. Owns: picking the signing CA and mapping inventory rows to OCSP
 * statuses. Must not: parse HTTP (admin/ocsp-responder does).
 */
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { X509Certificate } from 'node:crypto';
import { stat } from 'node:fs/promises';
import {
  createOcspResponse,
  parseOcspRequest,
  type CaMaterial,
  type OcspCertId,
  type OcspStatus,
  type RevocationReason,
  // The CertID hash function the request parser itself uses, so our matching can never disagree with it.
  issuerHashes,
} from '../pki/index.js';
import { startOcspResponder, type OcspAuthority, type RunningOcspResponder } from '../admin/ocsp-responder.js';
import type { PkiInventory } from '../store/sqlite/pki-inventory.js';
import { hasIntermediate, loadIntermediate, loadRoot, readText, type RootKeyAccess } from './pki-ca-store.js';
import { isErrno } from './pki-files.js';
import type { PkiLayout } from './pki-layout.js';
import { PkiService } from './pki-service.js';

interface CandidateCa {
  readonly serialNumber: string;
  readonly der: Buffer;
  readonly loadKey: () => Promise<CaMaterial>;
}

/** One parse of the CA certificate gives both its serial and its DER. */
function candidate(certPem: string, loadKey: () => Promise<CaMaterial>): CandidateCa {
  const cert = new X509Certificate(certPem);
  return { serialNumber: cert.serialNumber, der: cert.raw, loadKey };
}

/** Whether a CertID names this CA as the issuer (SHA-1 or SHA-256 hashes). */
function matches(ca: CandidateCa, id: OcspCertId): boolean {
  const own = issuerHashes(ca.der, id.hashAlgorithm);
  return own.nameHash.equals(id.issuerNameHash) && own.keyHash.equals(id.issuerKeyHash);
}

/** What identifies one version of a file: replaced (new inode), rewritten or chmod-ed changes it. */
async function fileStamp(path: string): Promise<string> {
  try {
    const st = await stat(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return '-';
    throw err;
  }
}

/** Runs `load` once and hands back the same promise until reset. */
function once<T>(load: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => (value ??= load());
}

/**
 * Builds the authority. The CA certificates and keys are read (and an encrypted root key
 * decrypted) once, and again only when one of their files changes: a request costs a stat
 * per CA file, so a new intermediate or an exported root key is still seen at once.
 */
export function pkiOcspAuthority(layout: PkiLayout, inventory: PkiInventory, access: RootKeyAccess): OcspAuthority {
  const files = [layout.rootCert, layout.rootKey, layout.intermediateCert, layout.intermediateKey, ...(access.keyFile !== undefined ? [access.keyFile] : [])];
  const load = async (): Promise<CandidateCa[]> => {
    const out: CandidateCa[] = [];
    if (await hasIntermediate(layout)) {
      out.push(candidate(await readText(layout.intermediateCert), once(() => loadIntermediate(layout))));
    }
    out.push(candidate(await readText(layout.rootCert), once(() => loadRoot(layout, access, 'answering OCSP for certificates the root signed'))));
    return out;
  };
  let loadedStamp: string | undefined;
  let loaded: Promise<CandidateCa[]> | undefined;
  const candidates = async (): Promise<CandidateCa[]> => {
    const stamp = (await Promise.all(files.map(fileStamp))).join('|');
    if (loaded === undefined || stamp !== loadedStamp) {
      loadedStamp = stamp;
      loaded = load();
      // A failed load (a file caught mid-change) is not kept: the next request tries again.
      loaded.catch(() => {
        if (loadedStamp === stamp) loaded = undefined;
      });
    }
    return loaded;
  };

  return {
    async respond(requestDer: Buffer): Promise<Buffer> {
      const request = parseOcspRequest(requestDer);
      const first = request.certIds[0];
      if (first === undefined) throw new BastionError('ERR_PKI_BAD_OCSP', 'OCSP request without a certificate');
      const cas = await candidates();
      // No match: the issuing CA signs, and createOcspResponse answers `unknown` for it.
      const ca = cas.find((c) => matches(c, first)) ?? cas[0]!;
      let material: CaMaterial;
      try {
        material = await ca.loadKey();
      } catch (err) {
        // The root key is offline: this responder is not authoritative for what the root signed.
        throw new BastionError('ERR_OCSP_UNAUTHORIZED', (err as Error).message);
      }
      const statusOf = (serialNumber: string): OcspStatus => {
        const record = inventory.get(serialNumber);
        if (record === undefined || record.issuerSerial !== ca.serialNumber) return { status: 'unknown' };
        if (record.status === 'revoked' && record.revokedAt !== null) {
          return { status: 'revoked', revokedAt: record.revokedAt, ...(record.reason !== null ? { reason: record.reason as RevocationReason } : {}) };
        }
        return { status: 'good' };
      };
      return createOcspResponse({ ca: material, certIds: request.certIds, statusOf, ...(request.nonce !== undefined ? { nonce: request.nonce } : {}) });
    },
  };
}

export interface PkiOcspResponderOptions {
  readonly host: string;
  readonly port: number;
  readonly pkiDir: string;
  readonly logger: Logger;
  readonly access?: RootKeyAccess;
}

/** Opens the PKI in `pkiDir` and serves OCSP for it over HTTP until `close()`. */
export async function startPkiOcspResponder(options: PkiOcspResponderOptions): Promise<RunningOcspResponder> {
  const access = options.access ?? {};
  const pki = await PkiService.open(options.pkiDir, access);
  let responder: RunningOcspResponder;
  try {
    responder = await startOcspResponder({
      host: options.host,
      port: options.port,
      authority: pkiOcspAuthority(pki.layout, pki.inventory, access),
      logger: options.logger,
    });
  } catch (err) {
    pki.close();
    throw err;
  }
  return {
    host: responder.host,
    port: responder.port,
    async close() {
      await responder.close();
      pki.close();
    },
  };
}
