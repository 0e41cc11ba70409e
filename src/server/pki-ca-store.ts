/**
 * The CA material on disk: reading the root and intermediate certificates and keys from
 * the PKI directory, with the root key possibly encrypted or moved off the machine.
 * Owns: which CA issues (the intermediate once one exists, else the root) and the clear
 * errors when a key is offline or locked. Must not: sign anything itself.
 */
import { readFile } from 'node:fs/promises';
import { BastionError } from '../core/errors.js';
import { decryptPrivateKeyPem, isEncryptedPrivateKeyPem, type CaMaterial } from '../pki/index.js';
import { checkKeyMode, isRegularFile } from './pki-files.js';
import type { PkiLayout } from './pki-layout.js';

/** How to reach the root key when it is encrypted or kept elsewhere. */
export interface RootKeyAccess {
  /** Passphrase of an encrypted root.key (`--root-key-passphrase-stdin`, BASTION_ROOT_KEY_PASSPHRASE). */
  readonly passphrase?: string | undefined;
  /** A root key brought back from offline storage for one command (`--root-key FILE`). */
  readonly keyFile?: string | undefined;
}

/** The CA that signs new leaves and the CA certificates above it. */
export interface IssuingCa {
  readonly kind: 'root' | 'intermediate';
  readonly material: CaMaterial;
  /** Certificates to send after a leaf: the intermediate when it issues, else none. */
  readonly chainPem: string;
}

export function rootKeyOfflineError(layout: PkiLayout, action: string): BastionError {
  return new BastionError(
    'ERR_PKI_ROOT_KEY_OFFLINE',
    `${action} needs the root CA key, which is offline (no ${layout.rootKey}); bring it back for this command with --root-key FILE`,
  );
}

export async function readText(path: string): Promise<string> {
  return readFile(path, 'utf8');
}

/** Throws ERR_PKI_NO_CA unless the PKI directory holds a root certificate. */
export async function assertCaExists(layout: PkiLayout): Promise<void> {
  if (!(await isRegularFile(layout.rootCert))) {
    throw new BastionError('ERR_PKI_NO_CA', `no CA in ${layout.dir}: create one with \`bastion ca init\` (or choose another --data-dir)`);
  }
}

export async function rootKeyOnline(layout: PkiLayout, access: RootKeyAccess): Promise<boolean> {
  return isRegularFile(access.keyFile ?? layout.rootKey);
}

export async function rootKeyEncrypted(layout: PkiLayout): Promise<boolean> {
  if (!(await isRegularFile(layout.rootKey))) return false;
  return isEncryptedPrivateKeyPem(await readText(layout.rootKey));
}

/** The root certificate and its (decrypted) key, or ERR_PKI_ROOT_KEY_OFFLINE / ERR_PKI_PASSPHRASE. */
export async function loadRoot(layout: PkiLayout, access: RootKeyAccess, action: string): Promise<CaMaterial> {
  await assertCaExists(layout);
  const keyFile = access.keyFile ?? layout.rootKey;
  if (!(await isRegularFile(keyFile))) {
    if (access.keyFile !== undefined) throw new BastionError('ERR_PKI_ROOT_KEY_OFFLINE', `root key file ${access.keyFile} does not exist`);
    throw rootKeyOfflineError(layout, action);
  }
  await checkKeyMode(keyFile);
  const stored = await readText(keyFile);
  let keyPem = stored;
  if (isEncryptedPrivateKeyPem(stored)) {
    if (access.passphrase === undefined) {
      throw new BastionError(
        'ERR_PKI_PASSPHRASE',
        `${action} needs the root CA key, which is encrypted: give its passphrase with --root-key-passphrase-stdin or BASTION_ROOT_KEY_PASSPHRASE`,
      );
    }
    keyPem = await decryptPrivateKeyPem(stored, access.passphrase);
  }
  return { certPem: await readText(layout.rootCert), keyPem };
}

export async function hasIntermediate(layout: PkiLayout): Promise<boolean> {
  return isRegularFile(layout.intermediateCert);
}

export async function loadIntermediate(layout: PkiLayout): Promise<CaMaterial> {
  await checkKeyMode(layout.intermediateKey);
  return { certPem: await readText(layout.intermediateCert), keyPem: await readText(layout.intermediateKey) };
}

/** The intermediate when there is one (so the root key can stay offline), else the root. */
export async function loadIssuingCa(layout: PkiLayout, access: RootKeyAccess, action: string): Promise<IssuingCa> {
  await assertCaExists(layout);
  if (await hasIntermediate(layout)) {
    const material = await loadIntermediate(layout);
    return { kind: 'intermediate', material, chainPem: material.certPem };
  }
  return { kind: 'root', material: await loadRoot(layout, access, action), chainPem: '' };
}
