/**
 * `bastion device simulate`: a fleet of simulated devices, each provisioned with the device
 * SDK (`bastion-mqtt/device`) by a claim certificate or one of a file of one-time tokens,
 * then connected with its own new certificate to publish one message. Owns: the options,
 * running N devices C at a time, and the summary (provisioned, failed with the reasons
 * grouped, devices per second); exit 1 if any device failed.
 * Must not: reach into the broker (everything goes over MQTT, as a real device's would).
 *
 * SECURITY: tokens and keys stay in memory unless `--out DIR` asks for the devices'
 * identities on disk (the SDK's FileIdentityStore: directories 0700, keys 0600); nothing
 * secret is printed (a reason names the error, never a token).
 */
import type { Command } from 'commander';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BastionError } from '../core/errors.js';
import { withDeadline } from '../device/request.js';
import { BastionDevice, DeviceError, FileIdentityStore, MemoryIdentityStore, ProvisioningError, parseTokenList, provision, type ProvisionOptions } from '../device/index.js';

interface SimulateFlags {
  count: string;
  template: string;
  url: string;
  ca: string;
  claimCert?: string;
  claimKey?: string;
  tokens?: string;
  parameter?: string[];
  concurrency: string;
  topic: string;
  timeout: string;
  servername?: string;
  out?: string;
  json?: boolean;
}

type Stage = 'provision' | 'save' | 'connect' | 'publish';

interface Outcome {
  index: number;
  identity?: string;
  failed?: { stage: Stage; reason: string; message: string };
}

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function wholeNumber(flag: string, value: string, min: number, max: number): number {
  if (!/^\d{1,6}$/.test(value) || Number(value) < min || Number(value) > max) throw usage(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return Number(value);
}

async function readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw usage(`cannot read the ${flag} file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** `name=value` pairs; `{i}` in a value becomes the device's number (1…N). */
export function parameterTemplates(pairs: readonly string[]): Array<[string, string]> {
  return pairs.map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usage(`--parameter takes name=value (e.g. serialNumber=SIM-{i}), got "${pair}"`);
    return [pair.slice(0, eq), pair.slice(eq + 1)];
  });
}

export function expand(pattern: string, values: Record<string, string>): string {
  return pattern.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}

/**
 * The directory name of an identity under `--out`: the identity itself when it is a plain
 * file name, else with every other character (and a leading dot) percent-encoded, so that
 * no identity (`..`, `a\b`, a space) names a path outside DIR and two never collide.
 */
export function identityDirName(identity: string): string {
  return identity.replace(/^\.|[^A-Za-z0-9._-]/gu, (c) => [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/** What failed, as a short key that groups alike failures (no per-device detail). */
export function reasonOf(err: unknown): { reason: string; message: string } {
  if (err instanceof ProvisioningError) return { reason: `${err.step} ${err.errorCode} (${err.statusCode})`, message: err.errorMessage };
  if (err instanceof DeviceError) return { reason: err.reasonCode !== undefined ? `${err.code} 0x${err.reasonCode.toString(16).padStart(2, '0')}` : err.code, message: err.message };
  return { reason: 'error', message: err instanceof Error ? err.message : String(err) };
}

/** Runs `work(i)` for i = 1…count, at most `concurrency` at a time. */
async function pool<T>(count: number, concurrency: number, work: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(count);
  let next = 1;
  const runner = async (): Promise<void> => {
    while (next <= count) {
      const i = next++;
      out[i - 1] = await work(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, runner));
  return out;
}

export interface SimulationSummary {
  requested: number;
  provisioned: number;
  published: number;
  failed: number;
  seconds: number;
  devicesPerSecond: number;
  reasons: Array<{ stage: Stage; reason: string; count: number; example: string }>;
  identities: string[];
}

export function summarize(outcomes: readonly Outcome[], seconds: number): SimulationSummary {
  const groups = new Map<string, { stage: Stage; reason: string; count: number; example: string }>();
  for (const o of outcomes) {
    if (o.failed === undefined) continue;
    const key = `${o.failed.stage}\u0000${o.failed.reason}`;
    const g = groups.get(key) ?? { stage: o.failed.stage, reason: o.failed.reason, count: 0, example: o.failed.message };
    g.count++;
    groups.set(key, g);
  }
  const provisioned = outcomes.filter((o) => o.identity !== undefined).length;
  return {
    requested: outcomes.length,
    provisioned,
    published: outcomes.filter((o) => o.identity !== undefined && o.failed === undefined).length,
    failed: outcomes.filter((o) => o.failed !== undefined).length,
    seconds,
    devicesPerSecond: seconds > 0 ? provisioned / seconds : 0,
    reasons: [...groups.values()].sort((a, b) => b.count - a.count),
    identities: outcomes.flatMap((o) => (o.identity !== undefined ? [o.identity] : [])),
  };
}

async function simulate(flags: SimulateFlags): Promise<number> {
  const count = wholeNumber('--count', flags.count, 1, 100_000);
  const concurrency = wholeNumber('--concurrency', flags.concurrency, 1, 1000);
  const timeoutMs = wholeNumber('--timeout', flags.timeout, 1, 600) * 1000;
  const parameters = parameterTemplates(flags.parameter ?? []);
  const haveClaim = flags.claimCert !== undefined || flags.claimKey !== undefined;
  if (haveClaim === (flags.tokens !== undefined)) throw usage('give either --claim-cert and --claim-key, or --tokens');
  if (haveClaim && (flags.claimCert === undefined || flags.claimKey === undefined)) throw usage('--claim-cert and --claim-key go together');
  const ca = await readFlagFile('--ca', flags.ca);
  let credential: (i: number) => Pick<ProvisionOptions, 'claim' | 'token'>;
  if (haveClaim) {
    const claim = { cert: await readFlagFile('--claim-cert', flags.claimCert!), key: await readFlagFile('--claim-key', flags.claimKey!) };
    credential = () => ({ claim });
  } else {
    const tokens = parseTokenList(await readFlagFile('--tokens', flags.tokens!));
    if (tokens.length < count) throw usage(`--tokens ${flags.tokens} holds ${tokens.length} token(s) for ${count} devices (one each: a token works once)`);
    credential = (i) => ({ token: tokens[i - 1]! });
  }
  const servername = flags.servername !== undefined ? { servername: flags.servername } : {};
  const outDir = flags.out;
  if (outDir !== undefined) {
    try {
      await mkdir(outDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw usage(`cannot create the --out directory ${outDir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  const device = async (i: number): Promise<Outcome> => {
    const values = { i: String(i) };
    let stage: Stage = 'provision';
    const outcome: Outcome = { index: i };
    try {
      const result = await provision({
        url: flags.url,
        ca,
        template: flags.template,
        ...credential(i),
        parameters: Object.fromEntries(parameters.map(([k, v]) => [k, expand(v, values)])),
        timeoutMs,
        ...servername,
      });
      outcome.identity = result.identity;
      if (outDir !== undefined) {
        stage = 'save';
        await new FileIdentityStore(join(outDir, identityDirName(result.identity))).save(result);
      }
      stage = 'connect';
      const d = new BastionDevice({ url: flags.url, ca, store: new MemoryIdentityStore(result), reconnect: false, renewal: { auto: false }, connectTimeoutMs: timeoutMs, requestTimeoutMs: timeoutMs, ...servername });
      try {
        await d.connect();
        stage = 'publish';
        const topic = expand(flags.topic, { ...values, identity: result.identity });
        const published = d.publish(topic, JSON.stringify({ identity: result.identity, device: i, at: new Date().toISOString() }), { qos: 1 });
        await withDeadline(published, timeoutMs, `PUBACK on ${topic}`);
      } finally {
        await d.close();
      }
    } catch (err) {
      outcome.failed = { stage, ...reasonOf(err) };
    }
    return outcome;
  };

  const started = performance.now();
  const outcomes = await pool(count, concurrency, device);
  const summary = summarize(outcomes, (performance.now() - started) / 1000);
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else {
    const out: string[] = [
      `provisioned ${summary.provisioned}/${count} devices in ${summary.seconds.toFixed(2)} s (${summary.devicesPerSecond.toFixed(1)} devices/s, concurrency ${concurrency})`,
      `connected with their own certificates and published: ${summary.published}/${count}`,
    ];
    if (summary.failed > 0) {
      out.push(`failed: ${summary.failed}`);
      for (const r of summary.reasons) out.push(`  ${r.count} at ${r.stage}: ${r.reason}${r.example !== '' ? `, e.g. ${r.example}` : ''}`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  }
  return summary.failed > 0 ? 1 : 0;
}

export function registerDeviceCommand(program: Command): void {
  const device = program.command('device').description('device-side tools (the bastion-mqtt/device SDK)');
  device
    .command('simulate')
    .description('provision N simulated devices (claim certificate or one-time tokens), connect each with its own certificate and publish one message; exit 1 if any failed')
    .requiredOption('--count <n>', 'how many devices')
    .requiredOption('--template <name>', 'the provisioning template')
    .requiredOption('--url <url>', 'the broker, mqtts://host:port')
    .requiredOption('--ca <file>', 'CA certificate (PEM) to verify the broker with')
    .option('--claim-cert <file>', 'claim certificate (PEM), from `bastion cert issue --profile claim`')
    .option('--claim-key <file>', 'the claim certificate key (PEM)')
    .option('--tokens <file>', 'one-time tokens (`bastion provision token create --count N` output): device i uses the i-th')
    .option('--parameter <name=value>', 'a template parameter; {i} is the device number 1…N (repeatable), e.g. serialNumber=SIM-{i}', collect)
    .option('--concurrency <n>', 'devices in progress at once', '10')
    .option('--topic <pattern>', 'where each device publishes; {identity} and {i} are replaced', 'devices/{identity}/telemetry')
    .option('--timeout <seconds>', 'deadline of each step (CONNACK, answer, PUBACK)', '10')
    .option('--servername <name>', 'TLS server name to check when it differs from the URL host')
    .option('--out <dir>', "keep each device's identity (key 0600, certificate chain, identity.json) in DIR/<identity>/ (other characters than A-Z a-z 0-9 . _ - percent-encoded) with the SDK's FileIdentityStore, e.g. to connect as one of them later; without it nothing is written")
    .option('--json', 'print the summary as JSON')
    .action(async (flags: SimulateFlags) => {
      process.exitCode = await simulate(flags);
    });
}
