/**
 * The OTA bench's world, made as an operator would make it: a data directory whose PKI the
 * CLI creates (`bastion ca init`, `ca intermediate`, `cert issue --profile server`), client
 * certificates for the devices and the telemetry pair from that PKI (PkiService, the code
 * behind `bastion cert issue`, in-process: 50+ CLI starts would cost a minute), the firmware
 * keys (`bastion ota key init`), one signed image per run (`ota sign` with sequence = run,
 * `ota release create`), and the broker's YAML. Owns: those files in the bench's temp
 * directory and the CLI child processes (each with a deadline). Must not: start the broker
 * or any client (ota-bench.ts does), or write outside its directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { input } from 'zod';
import type { configSchema } from '../src/core/config.js';
import type { FirmwarePublicKey, SignedKeySet } from '../src/firmware/index.js';
import { PkiService } from '../src/server/pki-service.js';
import { BASTION_MAIN } from './brokers.js';

export const VENDOR = 'bench';
export const CLASS_ID = 'bench-board';
export const TELEMETRY_TOPIC = 'bench/ota/telemetry';
const CLI_STEP_MS = 60_000;

type BastionConfigInput = input<typeof configSchema>;

export interface Pem {
  cert: string;
  key: string;
}

export interface OtaWorld {
  dataDir: string;
  configFile: string;
  port: number;
  /** The CA chain (root + issuing CA) PEM: what clients trust and what verifies them. */
  caPem: string;
  /** Files for a Mosquitto listener with the same certificates. */
  files: { caChain: string; serverCert: string; serverKey: string };
  devices: Map<string, Pem>;
  telemetry: { publisher: Pem & { clientId: string }; subscriber: Pem & { clientId: string } };
  rootKeys: FirmwarePublicKey[];
  keySet: SignedKeySet;
  /** One release per run, in run order: its id and its image's digest. */
  releases: { id: string; digest: string; sequence: number; bytes: number }[];
}

export interface OtaSetupOptions {
  devices: number;
  imageBytes: number;
  runs: number;
  /** ota.transfer.maxBytesPerSecond; null: the broker's default. */
  maxBytesPerSecond: number | null;
}

const children = new Set<ChildProcess>();

/** For the watchdog: kill every CLI child now. */
export function killSetupChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}

/** `bastion <args>`; its stdout, or throws with the end of its output unless it exits 0. */
export function bastionCli(args: string[], timeoutMs = CLI_STEP_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    // An empty passphrase: the bench root key is not encrypted (and no prompt can block).
    const child = spawn(process.execPath, [BASTION_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BASTION_ROOT_KEY_PASSPHRASE: '' } });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`bastion ${args.slice(0, 3).join(' ')} failed (${signal ?? code ?? '?'}): ${(stderr || stdout).trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

export const deviceIds = (n: number): string[] => Array.from({ length: n }, (_, i) => `ota-dev-${String(i + 1).padStart(3, '0')}`);

function brokerConfig(dataDir: string, port: number, o: OtaSetupOptions): BastionConfigInput {
  const pki = join(dataDir, 'pki');
  return {
    dataDir,
    listeners: [
      {
        name: 'devices',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        tls: { cert: join(pki, 'issued', 'localhost.crt'), key: join(pki, 'issued', 'localhost.key'), ca: join(pki, 'ca-chain.crt'), clientCerts: 'required' },
        auth: { providers: ['certificate'] },
      },
    ],
    limits: {
      // Every client comes from 127.0.0.1; a real fleet comes from many addresses.
      connections: { perIpMax: 100_000, perIpRate: { perSecond: 100_000, burst: 100_000 } },
      // The default per-client rate (1,000 msg/s, burst 2,000) is the telemetry rate itself.
      client: { publishRate: { perSecond: 1e9, burst: 1e9 } },
    },
    log: { level: 'warn' },
    persistence: { enabled: false },
    // Mosquitto runs without ACLs: the telemetry compares like with like. The OTA topics'
    // own guard (identity = certificate CN) runs in front of the ACL either way.
    authz: { policy: 'allow-all-INSECURE' },
    ...(o.maxBytesPerSecond !== null ? { ota: { transfer: { maxBytesPerSecond: o.maxBytesPerSecond } } } : {}),
  };
}

/** Makes everything in `work`; `port` is where the broker will listen. */
export async function makeOtaWorld(work: string, port: number, o: OtaSetupOptions, progress: (s: string) => void): Promise<OtaWorld> {
  const dataDir = join(work, 'data');
  const pkiDir = join(dataDir, 'pki');
  progress('ca init, ca intermediate, cert issue --profile server … ');
  await bastionCli(['ca', 'init', '--data-dir', dataDir, '--cn', 'Bastion OTA Bench Root CA']);
  await bastionCli(['ca', 'intermediate', '--data-dir', dataDir, '--cn', 'Bastion OTA Bench Issuing CA']);
  await bastionCli(['cert', 'issue', '--data-dir', dataDir, '--profile', 'server', '--cn', 'localhost', '--san', 'DNS:localhost,IP:127.0.0.1']);

  progress(`${o.devices + 2} client certificates … `);
  const certDir = join(work, 'certs');
  await mkdir(certDir, { recursive: true, mode: 0o700 });
  const devices = new Map<string, Pem>();
  const issue = async (pki: PkiService, cn: string): Promise<Pem> => {
    const f = await pki.issue({ profile: 'client', commonName: cn, days: 2, outDir: certDir, fileStem: cn });
    return { cert: await readFile(f.certPath, 'utf8'), key: await readFile(f.keyPath, 'utf8') };
  };
  const pki = await PkiService.open(pkiDir, { passphrase: '' });
  let telemetry: OtaWorld['telemetry'];
  try {
    for (const id of deviceIds(o.devices)) devices.set(id, await issue(pki, id));
    telemetry = {
      publisher: { ...(await issue(pki, 'telemetry-pub')), clientId: 'telemetry-pub' },
      subscriber: { ...(await issue(pki, 'telemetry-sub')), clientId: 'telemetry-sub' },
    };
  } finally {
    pki.close();
  }

  progress('ota key init … ');
  await bastionCli(['ota', 'key', 'init', '--data-dir', dataDir]);
  const otaDir = join(dataDir, 'ota');
  const rootKeys = (JSON.parse(await readFile(join(otaDir, 'root.pub.json'), 'utf8')) as { rootKeys: FirmwarePublicKey[] }).rootKeys;
  const keySet = JSON.parse(await readFile(join(otaDir, 'keyset.json'), 'utf8')) as SignedKeySet;

  const imageDir = join(work, 'images');
  await mkdir(imageDir, { recursive: true });
  const made: { version: string; sequence: number }[] = [];
  for (let run = 1; run <= o.runs; run++) {
    progress(`image ${run}: ota sign, ota release create … `);
    // A fresh random image per run (sequence = run), so every run downloads everything.
    const image = join(imageDir, `fw-${run}.bin`);
    await writeFile(image, randomBytes(o.imageBytes));
    const version = `1.0.${run}`;
    const manifest = `${image}.manifest.json`;
    await bastionCli(['ota', 'sign', image, '--vendor', VENDOR, '--class', CLASS_ID, '--fw-version', version, '--seq', String(run), '--out', manifest, '--data-dir', dataDir]);
    await bastionCli(['ota', 'release', 'create', image, '--manifest', manifest, '--data-dir', dataDir]);
    made.push({ version, sequence: run });
  }
  const listed = (await bastionCli(['ota', 'release', 'list', '--json', '--data-dir', dataDir]))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; imageDigest: string; version: string; imageSize?: number });
  const releases = made.map((m) => {
    const r = listed.find((x) => x.version === m.version);
    if (r === undefined) throw new Error(`release ${m.version} not in \`ota release list\``);
    return { id: r.id, digest: r.imageDigest, sequence: m.sequence, bytes: o.imageBytes };
  });

  const configFile = join(work, 'bastion.yaml');
  await writeFile(configFile, stringify(brokerConfig(dataDir, port, o)), { mode: 0o600 });
  return {
    dataDir,
    configFile,
    port,
    caPem: await readFile(join(pkiDir, 'ca-chain.crt'), 'utf8'),
    files: { caChain: join(pkiDir, 'ca-chain.crt'), serverCert: join(pkiDir, 'issued', 'localhost.crt'), serverKey: join(pkiDir, 'issued', 'localhost.key') },
    devices,
    telemetry,
    rootKeys,
    keySet,
    releases,
  };
}
