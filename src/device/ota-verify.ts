/**
 * The device's side of signed firmware updates: `UpdateVerifier` holds the pinned root
 * keys (built into the firmware), the current key set and the last installed sequence,
 * and checks every update with src/firmware's verifier before the device installs it.
 * Owns: that state and where it is kept (`FileUpdateStateStore`, `MemoryUpdateStateStore`).
 * Must not: download or install anything (ota-agent.ts does), or talk to the broker.
 *
 * SECURITY:
 * - State only moves forward: the key set version and the installed sequence never go
 *   down, so a replayed old key set or manifest stays refused across restarts.
 * - A state file that cannot be read is an error, never a fresh start: starting over at
 *   sequence 0 would accept every old, validly signed image (a rollback).
 * - The file is replaced as one unit (temporary file, fsync, rename, directory fsync), so
 *   a power cut leaves the old state or the new one.
 * - `markInstalled` is called after the image is in place (the bootloader swap): a crash
 *   before it re-offers the same sequence, which is then still above the stored one.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyKeySet, verifyUpdate, type Checked, type EnvelopeInput, type FirmwarePublicKey, type ImageInput, type KeySet, type Manifest, type SignedKeySet, type VerifyPolicy } from '../firmware/index.js';
import { DeviceError } from './errors.js';

/** What a device remembers between updates. */
export interface UpdateState {
  /** Sequence of the installed image of this device's class (0: factory image). */
  lastSequence: number;
  /** The highest key set version accepted (0: none). */
  keySetVersion: number;
  /** The current signed key set, as received. */
  keySet: SignedKeySet | null;
  /** Installed sequence per class (this device's and others it depends on). */
  installed: Record<string, number>;
}

export interface UpdateStateStore {
  /** The stored state, or null when none was saved yet. Throws when the stored state is unreadable. */
  load(): Promise<UpdateState | null>;
  save(state: UpdateState): Promise<void>;
}

function copyState(s: UpdateState): UpdateState {
  return { lastSequence: s.lastSequence, keySetVersion: s.keySetVersion, keySet: s.keySet === null ? null : { ...s.keySet, signature: { ...s.keySet.signature } }, installed: { ...s.installed } };
}

export class MemoryUpdateStateStore implements UpdateStateStore {
  private state: UpdateState | null = null;
  load(): Promise<UpdateState | null> {
    return Promise.resolve(this.state === null ? null : copyState(this.state));
  }
  save(state: UpdateState): Promise<void> {
    this.state = copyState(state);
    return Promise.resolve();
  }
}

const STATE_FILE = 'ota-state.json';

function checkedState(value: unknown, path: string): UpdateState {
  const bad = (): never => {
    throw new DeviceError('ERR_DEVICE_STORE', `${path} is not a valid OTA state file; refusing to start over (that would allow a rollback)`);
  };
  if (typeof value !== 'object' || value === null) return bad();
  const o = value as Record<string, unknown>;
  const nat = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : bad());
  const installed = o.installed;
  if (typeof installed !== 'object' || installed === null || Array.isArray(installed)) return bad();
  const inst: Record<string, number> = {};
  for (const [k, v] of Object.entries(installed)) inst[k] = nat(v);
  const ks = o.keySet;
  if (ks !== null && (typeof ks !== 'object' || Array.isArray(ks))) return bad();
  return { lastSequence: nat(o.lastSequence), keySetVersion: nat(o.keySetVersion), keySet: ks as SignedKeySet | null, installed: inst };
}

/** Keeps the state in `<dir>/ota-state.json` (dir 0700, file 0600), replaced atomically. */
export class FileUpdateStateStore implements UpdateStateStore {
  private readonly path: string;
  constructor(private readonly dir: string) {
    this.path = join(dir, STATE_FILE);
  }

  async load(): Promise<UpdateState | null> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new DeviceError('ERR_DEVICE_STORE', `cannot read ${this.path}: ${(err as Error).message}`);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = null;
    }
    return checkedState(value, this.path);
  }

  async save(state: UpdateState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temp = join(this.dir, `.${STATE_FILE}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const h = await open(temp, 'wx', 0o600);
      try {
        await h.writeFile(`${JSON.stringify(state)}\n`);
        await h.sync();
      } finally {
        await h.close();
      }
      await rename(temp, this.path);
    } catch (err) {
      await rm(temp, { force: true });
      throw new DeviceError('ERR_DEVICE_STORE', `cannot write ${this.path}: ${(err as Error).message}`);
    }
    try {
      const d = await open(this.dir, 'r');
      await d.sync().finally(() => d.close());
    } catch {
      // Directory fsync is not supported on every platform.
    }
  }
}

export interface UpdateVerifierOptions {
  /** The root public keys built into the firmware (`<data-dir>/ota/root.pub.json` on the broker side). */
  rootKeys: readonly FirmwarePublicKey[];
  vendorId: string;
  classId: string;
  state: UpdateStateStore;
  /** Default: the ML-DSA-65 half is required. */
  policy?: VerifyPolicy;
  /** A key set shipped with the firmware, used when the state holds none. */
  initialKeySet?: SignedKeySet;
  /** Epoch ms; default Date.now. */
  clock?: () => number;
}

/**
 * Checks updates for one device. Create with `UpdateVerifier.open`; each method returns a
 * refusal with its reason instead of throwing on bad input (state store failures throw).
 */
export class UpdateVerifier {
  private constructor(
    private readonly opts: UpdateVerifierOptions,
    private state: UpdateState,
  ) {}

  static async open(opts: UpdateVerifierOptions): Promise<UpdateVerifier> {
    if (opts.rootKeys.length === 0) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', 'UpdateVerifier needs at least one pinned root key');
    const stored = await opts.state.load();
    const state: UpdateState = stored ?? { lastSequence: 0, keySetVersion: 0, keySet: null, installed: {} };
    const v = new UpdateVerifier(opts, state);
    if (state.keySet === null && opts.initialKeySet !== undefined) {
      const r = await v.acceptKeySet(opts.initialKeySet);
      if (!r.ok) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `the initial key set is refused: ${r.reason}: ${r.message}`);
    }
    return v;
  }

  private get policy(): VerifyPolicy {
    return this.opts.policy ?? { requirePostQuantum: true };
  }

  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  /** The vendor this device's updates must name. */
  get vendorId(): string {
    return this.opts.vendorId;
  }

  /** The class this device's updates must name. */
  get classId(): string {
    return this.opts.classId;
  }

  get lastSequence(): number {
    return this.state.lastSequence;
  }

  get keySetVersion(): number {
    return this.state.keySetVersion;
  }

  /** Takes a new key set if it is root-signed and not older than the one held; persists it. */
  async acceptKeySet(signed: EnvelopeInput): Promise<Checked<{ keySet: KeySet }>> {
    const r = verifyKeySet({ signed, rootKeys: this.opts.rootKeys, policy: this.policy, minVersion: this.state.keySetVersion, now: this.now() });
    if (!r.ok) return r;
    const raw = (typeof signed === 'string' ? JSON.parse(signed) : signed instanceof Uint8Array ? JSON.parse(Buffer.from(signed).toString('utf8')) : signed) as SignedKeySet;
    const next = { ...this.state, keySetVersion: r.keySet.version, keySet: { keySet: raw.keySet, keyId: raw.keyId, signature: raw.signature } };
    await this.opts.state.save(next);
    this.state = next;
    return r;
  }

  /**
   * Everything checked before installing: the key set (a newer one given here is accepted
   * first), the manifest's signature and fields, and the image when given. Does not change
   * the installed sequence (markInstalled does, after the swap).
   */
  async verify(envelope: EnvelopeInput, opts: { keySet?: EnvelopeInput; image?: ImageInput } = {}): Promise<Checked<{ manifest: Manifest }>> {
    if (opts.keySet !== undefined) {
      const k = await this.acceptKeySet(opts.keySet);
      if (!k.ok) return k;
    }
    if (this.state.keySet === null) return { ok: false, reason: 'UnknownKey', message: 'this device holds no key set yet' };
    const r = verifyUpdate({
      envelope,
      keySet: this.state.keySet,
      rootKeys: this.opts.rootKeys,
      policy: this.policy,
      device: { vendorId: this.opts.vendorId, classId: this.opts.classId, lastSequence: this.state.lastSequence, now: this.now(), installed: this.state.installed, minKeySetVersion: this.state.keySetVersion },
      ...(opts.image !== undefined ? { image: opts.image } : {}),
    });
    return r.ok ? { ok: true, manifest: r.manifest } : r;
  }

  /** Records that the image of `manifest` is installed (its sequence becomes the floor). */
  async markInstalled(manifest: Manifest): Promise<void> {
    if (manifest.classId !== this.opts.classId) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `manifest is for class ${manifest.classId}, not ${this.opts.classId}`);
    if (manifest.sequence <= this.state.lastSequence) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `sequence ${manifest.sequence} is not above the installed ${this.state.lastSequence}`);
    const next = { ...this.state, lastSequence: manifest.sequence, installed: { ...this.state.installed, [manifest.classId]: manifest.sequence } };
    await this.opts.state.save(next);
    this.state = next;
  }
}
