/**
 * Where a device keeps its identity (certificate, key, metadata) between runs. Owns: the
 * `IdentityStore` contract, an in-memory store and a directory-backed one. Must not: talk
 * to the broker, or log key material.
 *
 * SECURITY (FileIdentityStore): the directory is 0700 and the key file 0600; an identity
 * is replaced as one unit (key, certificate and metadata written to new files, synced,
 * then `identity.json` renamed over the old one), so a crash or power cut in the middle of
 * a renewal leaves the old identity or the new one, never a key with the wrong certificate.
 * A key file that others can read is refused at load, as ssh refuses one.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkCertificateForKey } from './certificate.js';
import { DeviceError } from './errors.js';
import { isValidIdentity, type DeviceConfiguration } from './protocol.js';

/** A device's identity: what BastionDevice connects with. `ProvisionResult` is one. */
export interface DeviceIdentity {
  identity: string;
  /** Leaf then chain, PEM. */
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  /** CA PEM to verify the broker with, when the device has no `ca` option. */
  caPem?: string;
  certificateId?: string;
  notAfter?: Date;
  roles?: string[];
  deviceConfiguration?: DeviceConfiguration;
}

export interface IdentityStore {
  /** The stored identity, or null when none was saved yet. */
  load(): Promise<DeviceIdentity | null>;
  /** Replaces the stored identity as one unit. */
  save(identity: DeviceIdentity): Promise<void>;
}

function copyOf(id: DeviceIdentity): DeviceIdentity {
  return {
    ...id,
    ...(id.notAfter !== undefined ? { notAfter: new Date(id.notAfter.getTime()) } : {}),
    ...(id.roles !== undefined ? { roles: [...id.roles] } : {}),
    ...(id.deviceConfiguration !== undefined ? { deviceConfiguration: { ...id.deviceConfiguration } } : {}),
  };
}

function checkIdentity(id: DeviceIdentity, what: string): void {
  if (!isValidIdentity(id.identity)) throw new DeviceError('ERR_DEVICE_STORE', `${what}: identity ${JSON.stringify(id.identity)} cannot be a topic level`);
  checkCertificateForKey(id.certPem, id.keyPem, 'ERR_DEVICE_STORE', what);
}

/** Keeps the identity in memory (tests, simulators, devices that provision at every boot). */
export class MemoryIdentityStore implements IdentityStore {
  private current: DeviceIdentity | null;

  constructor(initial?: DeviceIdentity) {
    this.current = initial === undefined ? null : copyOf(initial);
  }

  load(): Promise<DeviceIdentity | null> {
    return Promise.resolve(this.current === null ? null : copyOf(this.current));
  }

  async save(identity: DeviceIdentity): Promise<void> {
    checkIdentity(identity, 'save');
    this.current = copyOf(identity);
  }
}

/** identity.json: the metadata and the names of this generation's files. */
interface IdentityFile {
  version: 1;
  identity: string;
  certFile: string;
  keyFile: string;
  caFile?: string;
  certificateId?: string;
  notAfter?: string;
  roles?: string[];
  deviceConfiguration?: DeviceConfiguration;
}

const INDEX = 'identity.json';
const GENERATION_FILE = /^(device|ca)-[0-9a-f]{16}\.(key|crt)$/;
const TMP_FILE = /^\.identity\.json\.[0-9a-f]{16}\.tmp$/;

/** Writes a new file (never an existing one) with `mode`, and syncs it to disk. */
async function writeSynced(path: string, data: string, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(data, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Not every platform can sync a directory (Windows); the rename is still atomic.
  }
}

function parseIndex(text: string, path: string): IdentityFile {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new DeviceError('ERR_DEVICE_STORE', `${path} is not JSON`);
  }
  const f = o as Partial<IdentityFile> | null;
  const fileName = (v: unknown): v is string => typeof v === 'string' && GENERATION_FILE.test(v);
  if (f === null || typeof f !== 'object' || f.version !== 1 || typeof f.identity !== 'string' || !fileName(f.certFile) || !fileName(f.keyFile) || (f.caFile !== undefined && !fileName(f.caFile))) {
    throw new DeviceError('ERR_DEVICE_STORE', `${path} is not an identity file of this SDK`);
  }
  return f as IdentityFile;
}

/**
 * Keeps the identity in a directory: `identity.json` (metadata, naming the current files),
 * `device-<generation>.key` (0600), `device-<generation>.crt` and `ca-<generation>.crt`.
 */
export class FileIdentityStore implements IdentityStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string) {}

  /** Paths of the current key and certificate (for other tools), or null when none is stored. */
  async paths(): Promise<{ cert: string; key: string; ca?: string } | null> {
    const index = await this.readIndex();
    if (index === null) return null;
    return { cert: join(this.dir, index.certFile), key: join(this.dir, index.keyFile), ...(index.caFile !== undefined ? { ca: join(this.dir, index.caFile) } : {}) };
  }

  async load(): Promise<DeviceIdentity | null> {
    const index = await this.readIndex();
    if (index === null) return null;
    const keyPath = join(this.dir, index.keyFile);
    const read = async (name: string): Promise<string> => {
      try {
        return await readFile(join(this.dir, name), 'utf8');
      } catch (err) {
        throw new DeviceError('ERR_DEVICE_STORE', `cannot read ${join(this.dir, name)}: ${(err as Error).message}`);
      }
    };
    if (process.platform !== 'win32') {
      const mode = (await stat(keyPath).catch(() => null))?.mode;
      if (mode !== undefined && (mode & 0o077) !== 0) {
        throw new DeviceError('ERR_DEVICE_STORE', `${keyPath} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
      }
    }
    const id: DeviceIdentity = {
      identity: index.identity,
      certPem: await read(index.certFile),
      keyPem: await read(index.keyFile),
      ...(index.caFile !== undefined ? { caPem: await read(index.caFile) } : {}),
      ...(index.certificateId !== undefined ? { certificateId: index.certificateId } : {}),
      ...(index.notAfter !== undefined ? { notAfter: new Date(index.notAfter) } : {}),
      ...(index.roles !== undefined ? { roles: index.roles } : {}),
      ...(index.deviceConfiguration !== undefined ? { deviceConfiguration: index.deviceConfiguration } : {}),
    };
    checkIdentity(id, `${this.dir}`);
    return id;
  }

  save(identity: DeviceIdentity): Promise<void> {
    // One save at a time: a renewal and a second save cannot interleave their files.
    const run = this.queue.then(() => this.saveNow(identity));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async readIndex(): Promise<IdentityFile | null> {
    const path = join(this.dir, INDEX);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new DeviceError('ERR_DEVICE_STORE', `cannot read ${path}: ${(err as Error).message}`);
    }
    return parseIndex(text, path);
  }

  private async saveNow(identity: DeviceIdentity): Promise<void> {
    checkIdentity(identity, 'save');
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const generation = randomBytes(8).toString('hex');
    const index: IdentityFile = {
      version: 1,
      identity: identity.identity,
      certFile: `device-${generation}.crt`,
      keyFile: `device-${generation}.key`,
      ...(identity.caPem !== undefined ? { caFile: `ca-${generation}.crt` } : {}),
      ...(identity.certificateId !== undefined ? { certificateId: identity.certificateId } : {}),
      ...(identity.notAfter !== undefined ? { notAfter: identity.notAfter.toISOString() } : {}),
      ...(identity.roles !== undefined ? { roles: identity.roles } : {}),
      ...(identity.deviceConfiguration !== undefined ? { deviceConfiguration: identity.deviceConfiguration } : {}),
    };
    await writeSynced(join(this.dir, index.keyFile), identity.keyPem, 0o600);
    await writeSynced(join(this.dir, index.certFile), identity.certPem, 0o644);
    if (identity.caPem !== undefined && index.caFile !== undefined) await writeSynced(join(this.dir, index.caFile), identity.caPem, 0o644);
    const tmp = join(this.dir, `.identity.json.${generation}.tmp`);
    await writeSynced(tmp, `${JSON.stringify(index, null, 2)}\n`, 0o600);
    // The switch: one rename replaces the old identity with the new one.
    await rename(tmp, join(this.dir, INDEX));
    await syncDir(this.dir);
    // The previous generation's files (and leftovers of an interrupted save) go.
    const keep = new Set([index.certFile, index.keyFile, index.caFile]);
    for (const name of await readdir(this.dir)) {
      if ((GENERATION_FILE.test(name) && !keep.has(name)) || TMP_FILE.test(name)) await rm(join(this.dir, name), { force: true });
    }
  }
}
