#!/usr/bin/env node
/**
 * A device that takes signed firmware updates (bastion-mqtt/device's OtaAgent): it connects
 * with the identity stored in --dir (as telemetry-device.mjs does), follows its OTA jobs,
 * checks each signed manifest against the pinned root keys BEFORE downloading, downloads
 * the image by blocks (resumable: kept in --state), checks it against the manifest, and
 * installs it the way a bootloader would, by an atomic swap of files in --firmware:
 *
 *   firmware/current.bin   the running image (replaced with one rename: never half written)
 *   firmware/previous.bin  the image before it (what a bootloader would fall back to)
 *
 * The installed sequence (anti-rollback) and key set live in --state/ota-state.json.
 *
 *   node examples/ota-device.mjs --url mqtts://127.0.0.1:8883 --ca bastion-data/pki/root.crt \
 *     --dir ./device-identity --root-pub bastion-data/ota/root.pub.json \
 *     --keyset bastion-data/ota/keyset.json --vendor acme --class thermo [--once]
 *
 * root.pub.json and keyset.json are what the device's factory image would carry. Prints one
 * line per event (`connected as …`, `job …`, `progress …`, `refused …`, `failed …`,
 * `installed …`); with --once it exits 0 after the first install. Errors: one line, exit 1
 * (2 for a usage error).
 */
import { mkdir, open, readFile, rename, copyFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BastionDevice, FileIdentityStore, FileUpdateStateStore, OtaAgent, UpdateVerifier } from 'bastion-mqtt/device';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.BASTION_URL },
    ca: { type: 'string', default: process.env.BASTION_CA },
    dir: { type: 'string', default: process.env.DEVICE_DIR ?? './device-identity' },
    'root-pub': { type: 'string' },
    keyset: { type: 'string' },
    vendor: { type: 'string' },
    class: { type: 'string' },
    state: { type: 'string' },
    firmware: { type: 'string', default: './firmware' },
    'block-size': { type: 'string' },
    once: { type: 'boolean', default: false },
  },
});
for (const flag of ['url', 'ca', 'root-pub', 'vendor', 'class']) {
  if (values[flag] === undefined) {
    console.error(`error: --${flag} is required (see the comment at the top of this file)`);
    process.exit(2);
  }
}
const stateDir = values.state ?? join(values.dir, 'ota');
const firmwareDir = values.firmware;

/** The bootloader stand-in: the new image becomes current.bin by one rename; the old one is kept. */
async function install(imagePath) {
  await mkdir(firmwareDir, { recursive: true, mode: 0o700 });
  const current = join(firmwareDir, 'current.bin');
  const incoming = join(firmwareDir, '.incoming.bin');
  // Copied next to current.bin first (same file system), flushed, then swapped in.
  await copyFile(imagePath, incoming);
  const h = await open(incoming, 'r+');
  await h.sync().finally(() => h.close());
  await copyFile(current, join(firmwareDir, 'previous.bin')).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await rename(incoming, current);
  await rm(imagePath, { force: true });
}

const device = new BastionDevice({ url: values.url, ca: readFileSync(values.ca), store: new FileIdentityStore(values.dir) });
let agent;
try {
  const rootKeys = JSON.parse(await readFile(values['root-pub'], 'utf8')).rootKeys;
  const initialKeySet = values.keyset === undefined ? undefined : JSON.parse(await readFile(values.keyset, 'utf8'));
  const verifier = await UpdateVerifier.open({
    rootKeys,
    vendorId: values.vendor,
    classId: values.class,
    state: new FileUpdateStateStore(stateDir),
    ...(initialKeySet !== undefined ? { initialKeySet } : {}),
  });
  agent = new OtaAgent({
    device,
    verifier,
    stateDir,
    install,
    ...(values['block-size'] !== undefined ? { blockSize: Number(values['block-size']) } : {}),
  });
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exit(1);
}

let done;
const finished = new Promise((resolve) => {
  done = resolve;
});
device.on('connected', ({ identity }) => console.log(`connected as ${identity}`));
device.on('disconnected', ({ reason, reconnecting }) => console.log(`disconnected: ${reason}${reconnecting ? ' (reconnecting)' : ''}`));
device.on('error', (err) => console.error(`warning: ${err.message}`));
agent.on('job', ({ jobId, executionNumber, releaseId, version }) => console.log(`job ${jobId} (execution ${executionNumber}): release ${releaseId ?? '?'} version ${version ?? '?'}`));
agent.on('progress', ({ jobId, received, total, resumed }) => console.log(`progress ${jobId}: ${received}/${total} bytes (${Math.floor((received * 100) / total)}%)${resumed ? ', resumed' : ''}`));
agent.on('refused', ({ jobId, reason, message }) => console.log(`refused${jobId === undefined ? '' : ` ${jobId}`}: ${reason}: ${message}`));
agent.on('failed', ({ jobId, reason, message }) => console.log(`failed ${jobId}: ${reason}: ${message}`));
agent.on('canceled', ({ jobId }) => console.log(`canceled ${jobId}`));
agent.on('installed', ({ jobId, version, sequence, reported }) => {
  console.log(`installed ${jobId}: version ${version}, sequence ${sequence}${reported ? '' : ' (report pending)'}`);
  if (values.once) done();
});
agent.on('error', (err) => console.error(`warning: ${err.message}`));
process.once('SIGINT', () => done());

try {
  await device.connect();
  await agent.start();
  await finished;
  await agent.close();
  await device.close();
} catch (err) {
  console.error(`error: ${err.message}`);
  await agent.close();
  await device.close();
  process.exit(1);
}
