/**
 * `bastion ota key init|rotate` and the registration of the `ota` commands (sign and
 * release live in ota-release.ts). Works on `<data-dir>/ota/` directly (docs/OTA.md);
 * each change is recorded for the broker's audit log (cli-change.ts). Owns: the commands'
 * options and output. Must not: sign or verify itself (src/firmware/), or print key
 * material.
 *
 * SECURITY: `key init` writes the root key once (never replacing one) and says, on
 * stderr, to move it offline; `key rotate` takes it back with --root-key, checks it is the
 * pinned root, and lists only the new release key (the old one becomes rotated out, so
 * devices refuse what it signed). Root rotation is not built (docs/OTA.md "Not yet").
 */
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { generateFirmwareKeyPair, signKeySet, type KeySet } from '../firmware/index.js';
import { OtaError, readKeyFile, readRootPins, RELEASE_KEY_FILE, exists, KEYSET_FILE, ROOT_KEY_FILE, ROOT_PUB_FILE, withOtaLock, writeKeyFile, writeRootPins, writeSignedKeySet } from '../ota/ota-files.js';
import { currentKeySet } from '../ota/releases.js';
import { auditedChange } from './cli-change.js';
import { registerOtaCampaignCommands } from './ota-campaign.js';
import { registerOtaJobCommands } from './ota-jobs.js';
import { registerOtaReleaseCommands } from './ota-release.js';
import { addProvisionSourceOptions, provisionSource, type ProvisionSourceOptions } from './provision-context.js';

/** How long a key set is valid: devices refuse an expired one (re-run `ota key rotate` within this). */
export const KEYSET_DAYS = 365;
const DAY_MS = 86_400_000;

function keySetDoc(version: number, releaseKeys: KeySet['keys'], revokedKeyIds: string[], now: number): KeySet {
  return { version, expires: now + KEYSET_DAYS * DAY_MS, keys: releaseKeys, revokedKeyIds };
}

async function keyInit(opts: ProvisionSourceOptions): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  const result = await auditedChange(dataDir, 'ota.key.init', 'ota', () =>
    withOtaLock(dataDir, async (dir) => {
      for (const f of [ROOT_PUB_FILE, KEYSET_FILE, RELEASE_KEY_FILE, ROOT_KEY_FILE]) {
        if (await exists(join(dir, f))) throw new OtaError(`OTA keys already exist in ${dir} (${f}); use \`bastion ota key rotate\` for a new release key`);
      }
      const root = generateFirmwareKeyPair();
      const release = generateFirmwareKeyPair();
      const now = Date.now();
      await writeKeyFile(join(dir, ROOT_KEY_FILE), 'root', root, false);
      await writeKeyFile(join(dir, RELEASE_KEY_FILE), 'release', release, false);
      await writeRootPins(dir, { rootKeys: [root.publicKey] });
      await writeSignedKeySet(dir, signKeySet(keySetDoc(1, [{ ...release.publicKey, role: 'release' }], [], now), root));
      return { dir, rootId: root.id, releaseId: release.id };
    }),
  (r) => ({ rootKeyId: r.rootId, releaseKeyId: r.releaseId, keySetVersion: 1 }),
  );
  const { dir } = result;
  process.stdout.write(
    [
      `root key     ${result.rootId}`,
      `release key  ${result.releaseId}`,
      `key set      version 1 (${join(dir, KEYSET_FILE)})`,
      `device pins  ${join(dir, ROOT_PUB_FILE)} (build these root public keys into your devices)`,
      '',
    ].join('\n'),
  );
  process.stderr.write(
    [
      '',
      '!!! OFFLINE ROOT KEY !!!',
      `The firmware root key is at ${join(dir, ROOT_KEY_FILE)}.`,
      'Move it to offline storage now (e.g. an encrypted USB stick kept in a safe) and delete it',
      'from this machine: anyone holding it can authorise firmware for every device.',
      'It is needed only to rotate release keys: bastion ota key rotate --root-key FILE',
      '',
    ].join('\n'),
  );
}

async function keyRotate(opts: ProvisionSourceOptions & { rootKey?: string }): Promise<void> {
  if (opts.rootKey === undefined) throw new OtaError('--root-key FILE is required (the offline root key written by `bastion ota key init`)');
  const rootPath = resolve(process.cwd(), opts.rootKey);
  const { dataDir } = await provisionSource(opts);
  const r = await auditedChange(dataDir, 'ota.key.rotate', 'ota', () =>
    withOtaLock(dataDir, async (dir) => {
      const root = await readKeyFile(rootPath, 'root');
      const pins = await readRootPins(dir);
      if (!pins.some((p) => p.id === root.id)) throw new OtaError(`${rootPath} is not the pinned root key of ${dir} (its id ${root.id.slice(0, 16)}… is not in ${ROOT_PUB_FILE})`);
      const now = Date.now();
      const old = await currentKeySet(dir, now).catch((err: unknown) => {
        // An expired key set is exactly what a rotation renews; anything else stops here.
        if (err instanceof OtaError && err.message.includes('KeySetExpired')) return null;
        throw err;
      });
      if (old === null) throw new OtaError(`the key set in ${dir} expired; key set renewal without rotation is not built yet`);
      const release = generateFirmwareKeyPair();
      const revoked = [...new Set([...old.revokedKeyIds, ...old.keys.map((k) => k.id)])];
      const next = keySetDoc(old.version + 1, [{ ...release.publicKey, role: 'release' }], revoked, now);
      await writeKeyFile(join(dir, RELEASE_KEY_FILE), 'release', release, true);
      await writeSignedKeySet(dir, signKeySet(next, root));
      return { version: next.version, releaseId: release.id, revoked: old.keys.map((k) => k.id) };
    }),
  (x) => ({ keySetVersion: x.version, releaseKeyId: x.releaseId, rotatedOut: x.revoked }),
  );
  process.stdout.write(`release key  ${r.releaseId}\nkey set      version ${r.version}\nrotated out  ${r.revoked.join(', ') || '-'}\n`);
  process.stderr.write('Devices refuse manifests signed by a rotated-out key once they hold this key set; publish it to them. Put the root key back offline.\n');
}

export function registerOtaCommand(program: Command): void {
  const ota = program.command('ota').description('signed firmware updates: keys, manifests, releases (<data-dir>/ota; docs/OTA.md)');
  const key = ota.command('key').description('the firmware root key (offline) and release keys');
  addProvisionSourceOptions(key.command('init').description('create the offline root key, the first release key and key set version 1')).action((opts: ProvisionSourceOptions) => keyInit(opts));
  addProvisionSourceOptions(
    key
      .command('rotate')
      .description('create a new release key; the next key set (signed by the root) lists only it, and the old key is rotated out')
      .option('--root-key <file>', 'the offline root key file (root.key.json)'),
  ).action((opts: ProvisionSourceOptions & { rootKey?: string }) => keyRotate(opts));
  registerOtaReleaseCommands(ota);
  registerOtaJobCommands(ota);
  registerOtaCampaignCommands(ota);
}
