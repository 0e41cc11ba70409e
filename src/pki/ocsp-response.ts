/**
 * OCSP responses (RFC 6960 §4.2). Owns: signing a BasicOCSPResponse with the CA key itself
 * (responderID byKey, the CA certificate included), the unsigned error responses, and
 * reading a response's statuses and validity (for stapling caches). Must not: decide a
 * certificate's status (the caller's `statusOf` does) or answer for another CA's certificates.
 */
import { createHash } from 'node:crypto';
import { loadCa, type CaMaterial, type LoadedCa } from './ca.js';
import { assertRevocationReason, reasonCode, reasonFromCode, type RevocationReason } from './crl.js';
import {
  DerError,
  bitString,
  contextTag,
  enumerated,
  explicit,
  explicitInner,
  generalizedTime,
  octetString,
  oid,
  parseDer,
  readGeneralizedTime,
  readOctetString,
  readOid,
  readUnsigned,
  sequence,
  sequenceOf,
  tlv,
  Tag,
  type DerElement,
} from './der.js';
import { parseNodeCertificate } from './fingerprint.js';
import { certIdDer, issuerHashes, nonceExtension, assertNonce, readCertId, type OcspCertId } from './ocsp-request.js';
import { PkiError } from './pki-error.js';
import { normalizeSerial } from './serial.js';
import { certificateParts, signatureAlgorithm, signWithCa } from './signing.js';

export type OcspStatus = { status: 'good' } | { status: 'revoked'; revokedAt: Date; reason?: RevocationReason } | { status: 'unknown' };

export type OcspErrorStatus = 'malformedRequest' | 'internalError' | 'tryLater' | 'unauthorized';

const RESPONSE_STATUS_CODES: Readonly<Record<string, number>> = {
  successful: 0,
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  sigRequired: 5,
  unauthorized: 6,
};

const OID_BASIC_RESPONSE = '1.3.6.1.5.5.7.48.1.1';
export const DEFAULT_OCSP_VALIDITY_SECONDS = 3600;
/** A week: longer-lived OCSP answers would outlive a revocation by too much. */
export const MAX_OCSP_VALIDITY_SECONDS = 7 * 24 * 3600;

export interface CreateOcspResponseOptions {
  /** The CA whose certificates are asked about; it signs the response. */
  readonly ca: CaMaterial;
  readonly certIds: readonly OcspCertId[];
  /** Status of a serial this CA issued (upper-case hex). */
  readonly statusOf: (serialNumber: string) => OcspStatus;
  /** Echoed in the response (RFC 8954) when the request carried one. */
  readonly nonce?: Buffer;
  readonly now?: Date;
  /** nextUpdate = now + this; default 3600. */
  readonly validitySeconds?: number;
}

/** A CA ready to answer: loaded key, DER certificate, the CertID hashes that mean "ours". */
interface Responder {
  readonly issuer: LoadedCa;
  readonly caDer: Buffer;
  readonly ownHashes: Record<OcspCertId['hashAlgorithm'], { nameHash: Buffer; keyHash: Buffer }>;
  readonly keyHash: Buffer;
}

/**
 * Loading a CA (parsing, key import, key/certificate match) costs milliseconds, far more
 * than signing one response, and a responder answers for the same few CAs all day: keep
 * the last few. The validity check still runs on every call.
 */
const responders = new Map<string, Promise<Responder>>();
const MAX_CACHED_RESPONDERS = 8;

async function loadResponder(ca: CaMaterial, now: Date): Promise<Responder> {
  const issuer = await loadCa(ca, now);
  const caDer = parseNodeCertificate(ca.certPem).raw;
  return {
    issuer,
    caDer,
    ownHashes: { sha1: issuerHashes(caDer, 'sha1'), sha256: issuerHashes(caDer, 'sha256') },
    keyHash: createHash('sha1').update(certificateParts(caDer).publicKeyBits).digest(),
  };
}

async function responderFor(ca: CaMaterial, now: Date): Promise<Responder> {
  const material = { certPem: ca.certPem, keyPem: ca.keyPem };
  if (typeof material.certPem !== 'string' || typeof material.keyPem !== 'string') return loadResponder(material, now);
  const key = `${material.certPem}\0${material.keyPem}`;
  let pending = responders.get(key);
  if (pending === undefined) {
    pending = loadResponder(material, now);
    responders.set(key, pending);
    pending.catch(() => responders.delete(key));
    if (responders.size > MAX_CACHED_RESPONDERS) responders.delete(responders.keys().next().value as string);
  }
  const responder = await pending;
  const { notBefore, notAfter } = responder.issuer.cert;
  // SECURITY: a cached CA must still be valid at this response's time.
  if (now < notBefore || now > notAfter) return loadResponder(material, now);
  return responder;
}

/** Copies and checks a caller's CertID, so a malformed one is a clear error, not a crash later. */
function copyCertId(id: OcspCertId): OcspCertId {
  const { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber } = id;
  if ((hashAlgorithm !== 'sha1' && hashAlgorithm !== 'sha256') || !(issuerNameHash instanceof Uint8Array) || !(issuerKeyHash instanceof Uint8Array)) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', 'a CertID needs hashAlgorithm sha1 or sha256 and byte hashes');
  }
  return { hashAlgorithm, issuerNameHash: Buffer.from(issuerNameHash), issuerKeyHash: Buffer.from(issuerKeyHash), serialNumber: normalizeSerial(serialNumber) };
}

function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

function certStatusDer(status: OcspStatus): Buffer {
  switch (status.status) {
    case 'good':
      return tlv(contextTag(0, false), Buffer.alloc(0));
    case 'unknown':
      return tlv(contextTag(2, false), Buffer.alloc(0));
    case 'revoked': {
      if (!(status.revokedAt instanceof Date) || !Number.isFinite(status.revokedAt.getTime())) {
        throw new PkiError('ERR_PKI_INVALID_INPUT', 'a revoked status needs a valid revokedAt Date');
      }
      const parts = [generalizedTime(status.revokedAt)];
      if (status.reason !== undefined) {
        assertRevocationReason(status.reason);
        parts.push(explicit(0, enumerated(reasonCode(status.reason))));
      }
      // RevokedInfo is IMPLICIT [1]: the SEQUENCE tag is replaced by a constructed [1].
      return tlv(contextTag(1, true), Buffer.concat(parts));
    }
    default:
      throw new PkiError('ERR_PKI_INVALID_INPUT', `statusOf returned an unknown status ${JSON.stringify((status as { status: unknown }).status)}`);
  }
}

/**
 * A signed, successful OCSP response for `certIds`. SECURITY: a CertID whose issuer hashes
 * do not match this CA is answered `unknown`, never with `statusOf`'s answer: a serial is
 * only meaningful together with its issuer.
 */
export async function createOcspResponse(options: CreateOcspResponseOptions): Promise<Buffer> {
  const { ca, statusOf, nonce, now = new Date(), validitySeconds = DEFAULT_OCSP_VALIDITY_SECONDS } = options;
  if (!Array.isArray(options.certIds)) throw new PkiError('ERR_PKI_INVALID_INPUT', 'certIds must be an array');
  const certIds = options.certIds.map(copyCertId);
  if (typeof statusOf !== 'function') throw new PkiError('ERR_PKI_INVALID_INPUT', 'statusOf must be a function');
  if (nonce !== undefined) assertNonce(nonce);
  if (!Number.isInteger(validitySeconds) || validitySeconds < 1 || validitySeconds > MAX_OCSP_VALIDITY_SECONDS) {
    throw new PkiError('ERR_PKI_INVALID_INPUT', `validitySeconds must be an integer from 1 to ${MAX_OCSP_VALIDITY_SECONDS}`);
  }
  const { issuer, caDer, ownHashes, keyHash } = await responderFor(ca, now);
  const thisUpdate = wholeSeconds(now);
  const nextUpdate = new Date(thisUpdate.getTime() + validitySeconds * 1000);

  const responses = certIds.map((id) => {
    const own = ownHashes[id.hashAlgorithm];
    const ours = own.nameHash.equals(id.issuerNameHash) && own.keyHash.equals(id.issuerKeyHash);
    const status: OcspStatus = ours ? statusOf(id.serialNumber) : { status: 'unknown' };
    return sequence(certIdDer(id), certStatusDer(status), generalizedTime(thisUpdate), explicit(0, generalizedTime(nextUpdate)));
  });
  const responseData = sequence(
    // responderID byKey: SHA-1 of the CA's public key bits (RFC 6960 §4.2.1), EXPLICIT [2].
    explicit(2, octetString(keyHash)),
    generalizedTime(thisUpdate),
    sequence(...responses),
    ...(nonce !== undefined ? [explicit(1, sequence(nonceExtension(nonce)))] : []),
  );
  const basic = sequence(responseData, signatureAlgorithm(issuer.keyAlgorithm).der, bitString(signWithCa(issuer, responseData)), explicit(0, sequence(caDer)));
  return sequence(enumerated(RESPONSE_STATUS_CODES.successful!), explicit(0, sequence(oid(OID_BASIC_RESPONSE), octetString(basic))));
}

/** An unsigned error response (RFC 6960 §4.2.1: error responses carry no responseBytes). */
export function ocspErrorResponse(status: OcspErrorStatus): Buffer {
  const code = RESPONSE_STATUS_CODES[status];
  if (code === undefined || code === RESPONSE_STATUS_CODES.successful) throw new PkiError('ERR_PKI_INVALID_INPUT', `unknown OCSP error status ${JSON.stringify(status)}`);
  return sequence(enumerated(code));
}

export interface OcspSingleResponse {
  readonly serialNumber: string;
  readonly status: OcspStatus['status'];
  readonly thisUpdate: Date;
  readonly nextUpdate?: Date;
  readonly revokedAt?: Date;
  readonly reason?: RevocationReason;
  readonly certId: OcspCertId;
}

export interface OcspResponseInfo {
  /** `successful`, `malformedRequest`, `internalError`, `tryLater`, `sigRequired` or `unauthorized`. */
  readonly responseStatus: string;
  readonly producedAt?: Date;
  readonly responses: OcspSingleResponse[];
}

function readSingleResponse(element: DerElement): OcspSingleResponse {
  const [id, certStatus, thisUpdateElement, ...rest] = sequenceOf(element, 'SingleResponse');
  const certId = readCertId(id);
  const thisUpdate = readGeneralizedTime(thisUpdateElement, 'thisUpdate');
  const next = rest[0]?.tag === contextTag(0, true) ? readGeneralizedTime(explicitInner(rest[0], 'nextUpdate'), 'nextUpdate') : undefined;
  const base = { serialNumber: certId.serialNumber, thisUpdate, certId, ...(next !== undefined ? { nextUpdate: next } : {}) };
  if (certStatus === undefined) throw new DerError('certStatus is missing');
  if (certStatus.tag === contextTag(0, false)) return { ...base, status: 'good' };
  if (certStatus.tag === contextTag(2, false)) return { ...base, status: 'unknown' };
  if (certStatus.tag !== contextTag(1, true)) throw new DerError(`unknown certStatus tag 0x${certStatus.tag.toString(16)}`);
  const [time, reasonElement] = sequenceOf({ ...certStatus, tag: Tag.Sequence }, 'RevokedInfo');
  const revokedAt = readGeneralizedTime(time, 'revocationTime');
  const reason = reasonElement === undefined ? undefined : reasonFromCode(Number(readUnsigned(explicitInner(reasonElement, 'revocationReason'), 'revocationReason', Tag.Enumerated)));
  return { ...base, status: 'revoked', revokedAt, ...(reason !== undefined ? { reason } : {}) };
}

function readResponse(der: Uint8Array): OcspResponseInfo {
  const [statusElement, bytesElement] = sequenceOf(parseDer(der), 'OCSPResponse');
  const code = Number(readUnsigned(statusElement, 'responseStatus', Tag.Enumerated));
  const responseStatus = Object.keys(RESPONSE_STATUS_CODES).find((k) => RESPONSE_STATUS_CODES[k] === code);
  if (responseStatus === undefined) throw new DerError(`unknown responseStatus ${code}`);
  if (responseStatus !== 'successful') return { responseStatus, responses: [] };
  if (bytesElement === undefined || bytesElement.tag !== contextTag(0, true)) throw new DerError('successful response without responseBytes');
  const [type, response] = sequenceOf(explicitInner(bytesElement, 'responseBytes'), 'ResponseBytes');
  if (readOid(type, 'responseType') !== OID_BASIC_RESPONSE) throw new DerError('not a basic OCSP response');
  const [tbs] = sequenceOf(parseDer(readOctetString(response, 'response')), 'BasicOCSPResponse');
  const fields = sequenceOf(tbs, 'ResponseData');
  let i = fields[0]?.tag === contextTag(0, true) ? 1 : 0;
  const responder = fields[i++];
  if (responder === undefined || (responder.tag !== contextTag(1, true) && responder.tag !== contextTag(2, true))) throw new DerError('bad responderID');
  const producedAt = readGeneralizedTime(fields[i++], 'producedAt');
  const responses = sequenceOf(fields[i], 'responses').map(readSingleResponse);
  return { responseStatus, producedAt, responses };
}

/**
 * Reads an OCSP response's status and single responses. Does not verify the signature
 * (the caller stapling its own CA's responses trusts where they came from).
 * Throws ERR_PKI_BAD_OCSP on anything malformed.
 */
export function parseOcspResponse(der: Uint8Array): OcspResponseInfo {
  if (!(der instanceof Uint8Array)) throw new PkiError('ERR_PKI_BAD_OCSP', 'OCSP response must be bytes');
  try {
    return readResponse(Uint8Array.from(der));
  } catch (err) {
    if (err instanceof DerError) throw new PkiError('ERR_PKI_BAD_OCSP', `malformed OCSP response: ${err.message}`);
    throw new PkiError('ERR_PKI_BAD_OCSP', 'malformed OCSP response');
  }
}
