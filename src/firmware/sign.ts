/**
 * Signing a manifest with a release key: the envelope `bastion ota sign` writes. Owns:
 * the `SignedManifest` form. Must not: choose the sequence or read key files (the CLI
 * does), or verify (verify.ts).
 */
import { MANIFEST_CONTEXT, signBytes, type EnvelopeSignature, type FirmwareKeyPair } from './keyset.js';
import { encodeManifest, type Manifest } from './manifest.js';

/** `{ "manifest": "<base64 canonical bytes>", "keyId": release key id, "signature": … }` */
export interface SignedManifest {
  manifest: string;
  keyId: string;
  signature: EnvelopeSignature;
}

/** Encodes `m` canonically and signs the bytes (both halves). Throws FieldError on a bad field. */
export function signManifest(m: Manifest, releaseKey: FirmwareKeyPair): SignedManifest {
  const bytes = encodeManifest(m);
  return { manifest: bytes.toString('base64'), keyId: releaseKey.id, signature: signBytes(MANIFEST_CONTEXT, bytes, releaseKey) };
}
