/**
 * The firmware module's public surface: signed OTA manifests and key sets, shared by the
 * broker side (src/ota/, the CLI) and the device SDK. Pure: no I/O (node:crypto only).
 * See docs/OTA.md.
 */
export { MANIFEST_VERSION, MAX_MANIFEST_BYTES, MAX_DEPENDENCIES, encodeManifest, decodeManifest } from './manifest.js';
export type { Manifest, ManifestDependency } from './manifest.js';
export {
  KEYSET_CONTEXT,
  MANIFEST_CONTEXT,
  decodeKeySet,
  encodeKeySet,
  exportFirmwarePrivateKeys,
  generateFirmwareKeyPair,
  importFirmwareKeyPair,
  keyIdOf,
  signKeySet,
} from './keyset.js';
export type { EnvelopeSignature, FirmwareKeyPair, FirmwarePublicKey, KeyRole, KeySet, KeySetEntry, SignedKeySet } from './keyset.js';
export { signManifest } from './sign.js';
export type { SignedManifest } from './sign.js';
export { verifyKeySet, verifySignedManifest, verifyUpdate, checkManifestForDevice, checkImage, sha256Hex } from './verify.js';
export type { DeviceFacts, EnvelopeInput, ImageInput, KeySetCheck, UpdateCheck, VerifyPolicy } from './verify.js';
export { FieldError, isoSeconds } from './canonical.js';
export type { Checked, Refusal, RefusalReason } from './result.js';
