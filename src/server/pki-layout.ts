/**
 * Where the PKI keeps its state: the file names under `<dataDir>/pki/`. Owns: the layout
 * and nothing else, so the CLI, the zero-config start and the broker agree on it.
 */
import { join, resolve } from 'node:path';

export interface PkiLayout {
  /** Absolute path of the PKI directory. */
  readonly dir: string;
  readonly rootCert: string;
  /** Unencrypted or encrypted PKCS#8; absent after `ca export-root`. */
  readonly rootKey: string;
  readonly intermediateCert: string;
  readonly intermediateKey: string;
  /** Intermediate + root: what a verifier that trusts nothing else needs. */
  readonly caChain: string;
  /** The CRLs (intermediate-signed, then root-signed), concatenated PEM. */
  readonly crl: string;
  readonly inventory: string;
  /** Default output directory of `bastion cert issue`. */
  readonly issuedDir: string;
}

export const DEFAULT_DATA_DIR = 'bastion-data';

/** The PKI directory of a data directory. */
export function pkiDirOf(dataDir: string): string {
  return join(resolve(dataDir), 'pki');
}

/** The built-in PKI's directory of a config: `pki.dir` (relative to the config file) or `<dataDir>/pki`. */
export function configuredPkiDir(pkiDirSetting: string | undefined, baseDir: string, dataDir: string): string {
  return pkiDirSetting !== undefined ? resolve(baseDir, pkiDirSetting) : pkiDirOf(dataDir);
}

export function pkiLayout(pkiDir: string): PkiLayout {
  const dir = resolve(pkiDir);
  return {
    dir,
    rootCert: join(dir, 'root.crt'),
    rootKey: join(dir, 'root.key'),
    intermediateCert: join(dir, 'intermediate.crt'),
    intermediateKey: join(dir, 'intermediate.key'),
    caChain: join(dir, 'ca-chain.crt'),
    crl: join(dir, 'crl.pem'),
    inventory: join(dir, 'inventory.db'),
    issuedDir: join(dir, 'issued'),
  };
}

/** File names usable for `<cn>.crt` / `<cn>.key`: no path separators, no dot files. */
export function fileStemFor(commonName: string): string {
  const stem = commonName.replace(/[^A-Za-z0-9._@-]/g, '_').replace(/^\.+/, '_');
  return stem.length > 0 ? stem.slice(0, 120) : 'certificate';
}
