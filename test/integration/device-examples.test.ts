/**
 * The device examples (examples/*.mjs, importing `bastion-mqtt/device` by the package's
 * own name) and `bastion device simulate`, run as child processes against a broker with
 * provisioning (device-support.ts): a claim provisions and stores an identity, a second
 * run sees it, the telemetry device publishes what an observer receives; a token works
 * once; simulate provisions a fleet by claim and by tokens, reports devices/s, and groups
 * failures by reason with exit code 1; ota-device.mjs installs two signed releases made by
 * `bastion ota` (the second swaps the first to previous.bin).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BastionDevice, MemoryIdentityStore, type DeviceMessage } from '../../src/device/index.js';
import { startDeviceBroker, type DeviceBroker } from './device-support.js';
import { BASTION_MAIN, Inbox, REPO_ROOT, run, type ProcResult } from './support.js';

let broker: DeviceBroker;
let observer: BastionDevice;
const seen = new Inbox<DeviceMessage>();

before(async () => {
  broker = await startDeviceBroker();
  // The PKI's demo device may subscribe to devices/#: it watches what the examples publish.
  observer = new BastionDevice({ url: broker.url, ca: broker.caPem, store: new MemoryIdentityStore(broker.observer) });
  observer.on('message', (m) => seen.push(m));
  await observer.connect();
  await observer.subscribe('devices/#');
});
after(async () => {
  await observer?.close();
  await broker?.stop();
});

function example(name: string, args: string[], env: Record<string, string> = {}): Promise<ProcResult> {
  return run(process.execPath, [join(REPO_ROOT, 'examples', name), ...args], { cwd: broker.dir, timeoutMs: 30_000, env: { ...process.env, ...env } });
}

function simulate(args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'device', 'simulate', '--url', broker.url, '--ca', broker.caFile, ...args], { timeoutMs: 60_000 });
}

function ok(r: ProcResult, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const topicsFrom = (identity: string): string[] => seen.items.filter((m) => m.topic === `devices/${identity}/telemetry`).map((m) => m.payload.toString());

describe('examples', () => {
  test('provision-with-claim.mjs stores an identity; again says so; telemetry-device.mjs publishes with it', async () => {
    const claim = await broker.claim('sensor');
    const dir = join(broker.dir, 'example-claim');
    const args = ['--url', broker.url, '--ca', broker.caFile, '--claim-cert', claim.certFile, '--claim-key', claim.keyFile, '--template', 'sensor', '--parameter', 'serialNumber=EX-1', '--dir', dir];
    const out = ok(await example('provision-with-claim.mjs', args), 'provision-with-claim.mjs');
    assert.match(out, /^identity: sensor-EX-1$/m);
    assert.match(out, /^roles: sensor; certificate [0-9A-Fa-f]+ valid until \d{4}-/m);
    assert.match(out, /^deviceConfiguration: \{"interval":30,"unit":"C","telemetry":true\}$/m);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.match(ok(await example('provision-with-claim.mjs', args), 'second run'), /^already provisioned; identity: sensor-EX-1$/m);

    // The same through the environment instead of flags.
    const env = { BASTION_URL: broker.url, BASTION_CA: broker.caFile, DEVICE_DIR: dir };
    const telemetry = ok(await example('telemetry-device.mjs', ['--count', '3', '--interval-ms', '0'], env), 'telemetry-device.mjs');
    assert.match(telemetry, /^connected as sensor-EX-1$/m);
    assert.match(telemetry, /^published 3\/3 to devices\/sensor-EX-1\/telemetry$/m);
    const got = await seen.waitFor(() => topicsFrom('sensor-EX-1').length >= 3, 5000, 'the observer receives the telemetry');
    assert.ok(got.length >= 3);
    assert.deepEqual(
      topicsFrom('sensor-EX-1').map((p) => (JSON.parse(p) as { seq: number }).seq),
      [1, 2, 3],
    );
  });

  test('provision-with-token.mjs: a token file provisions once; the second use is refused at CONNECT', async () => {
    const [token] = await broker.tokens('sensor', 1);
    const tokenFile = join(broker.dir, 'token.txt');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const args = ['--url', broker.url, '--ca', broker.caFile, '--token-file', tokenFile, '--template', 'sensor'];
    const out = ok(await example('provision-with-token.mjs', [...args, '--parameter', 'serialNumber=EX-2', '--dir', join(broker.dir, 'example-token')]), 'provision-with-token.mjs');
    assert.match(out, /^identity: sensor-EX-2$/m);
    const again = await example('provision-with-token.mjs', [...args, '--parameter', 'serialNumber=EX-3', '--dir', join(broker.dir, 'example-token-2')]);
    assert.equal(again.code, 1, again.stdout);
    assert.match(again.stderr, /^error: .*refused the connection.*\(0x86\)$/m);
    assert.ok(!again.stderr.includes(token!), 'the token is not printed');
  });

  test('examples fail with one line on a missing flag or a rejection', async () => {
    const claim = await broker.claim('sensor');
    const missing = await example('provision-with-claim.mjs', ['--dir', join(broker.dir, 'example-missing')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^error: --url is required/m);
    const rejected = await example('provision-with-claim.mjs', ['--url', broker.url, '--ca', broker.caFile, '--claim-cert', claim.certFile, '--claim-key', claim.keyFile, '--template', 'sensor', '--parameter', 'serialNumber=no good', '--dir', join(broker.dir, 'example-rejected')]);
    assert.equal(rejected.code, 1);
    assert.match(rejected.stderr, /^error: rejected: InvalidParameters \(400\): .+$/m);
  });
});

describe('bastion device simulate', () => {
  test('by claim: N devices, C at a time, each publishes with its own certificate', async () => {
    const claim = await broker.claim('sensor');
    const out = ok(await simulate(['--count', '8', '--concurrency', '3', '--template', 'sensor', '--claim-cert', claim.certFile, '--claim-key', claim.keyFile, '--parameter', 'serialNumber=SIM-{i}']), 'simulate');
    assert.match(out, /^provisioned 8\/8 devices in \d+\.\d\d s \(\d+\.\d devices\/s, concurrency 3\)$/m);
    assert.match(out, /^connected with their own certificates and published: 8\/8$/m);
    assert.doesNotMatch(out, /failed/);
    await seen.waitFor(() => Array.from({ length: 8 }, (_, i) => `sensor-SIM-${i + 1}`).every((id) => topicsFrom(id).length === 1), 5000, 'one message per simulated device');
  });

  test('by tokens (--json); reused tokens fail, grouped by reason, exit 1', async () => {
    const tokens = await broker.tokens('sensor', 3);
    const tokenFile = join(broker.dir, 'tokens.txt');
    writeFileSync(tokenFile, `# tokens for the simulation\n${tokens.join('\n')}\n`, { mode: 0o600 });
    const args = ['--count', '3', '--template', 'sensor', '--tokens', tokenFile, '--parameter', 'serialNumber=TOK-{i}', '--topic', 'devices/{identity}/hello/{i}'];
    const summary = JSON.parse(ok(await simulate([...args, '--json']), 'simulate --tokens')) as { provisioned: number; published: number; failed: number; identities: string[] };
    assert.deepEqual([summary.provisioned, summary.published, summary.failed], [3, 3, 0]);
    assert.deepEqual([...summary.identities].sort(), ['sensor-TOK-1', 'sensor-TOK-2', 'sensor-TOK-3']);
    await seen.waitFor((items) => items.some((m) => m.topic === 'devices/sensor-TOK-3/hello/3'), 5000, 'the --topic pattern');

    const again = await simulate(args);
    assert.equal(again.code, 1, again.stdout);
    assert.match(again.stdout, /^provisioned 0\/3 devices/m);
    assert.match(again.stdout, /^failed: 3$/m);
    assert.match(again.stdout, /^ {2}3 at provision: ERR_DEVICE_CONNACK 0x86, e\.g\. .+$/m);
    for (const t of tokens) assert.ok(!again.stdout.includes(t) && !again.stderr.includes(t), 'no token in the output');
  });

  test('a mix: the devices the allow-list refuses are counted apart from those it admits', async () => {
    const tokens = await broker.tokens('listed', 3);
    const tokenFile = join(broker.dir, 'listed-tokens.txt');
    writeFileSync(tokenFile, tokens.join('\n'), { mode: 0o600 });
    const r = await simulate(['--count', '3', '--template', 'listed', '--tokens', tokenFile, '--parameter', 'serialNumber=OK-{i}']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /^provisioned 2\/3 devices/m);
    assert.match(r.stdout, /^connected with their own certificates and published: 2\/3$/m);
    assert.match(r.stdout, /^ {2}1 at provision: register NotAllowListed \(403\), e\.g\. .+$/m);
  });

  // Last: the claim it uses ends up banned (by its fingerprint only: nothing else is affected).
  test(
    'one claim provisions more devices in a minute than limits.flapping.maxConnects (30) when provisioning.ratePerMinute allows it',
    async () => {
      const claim = await broker.claim('sensor');
      const r = await simulate(['--count', '40', '--concurrency', '10', '--template', 'sensor', '--claim-cert', claim.certFile, '--claim-key', claim.keyFile, '--parameter', 'serialNumber=FLEET-{i}']);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, /^provisioned 40\/40 devices/m);
    },
  );

  test('usage errors are one line: no credential, too few tokens', async () => {
    const none = await simulate(['--count', '1', '--template', 'sensor']);
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'bastion: give either --claim-cert and --claim-key, or --tokens\n');
    const tokenFile = join(broker.dir, 'one-token.txt');
    writeFileSync(tokenFile, `${(await broker.tokens('sensor', 1))[0]!}\n`);
    const few = await simulate(['--count', '2', '--template', 'sensor', '--tokens', tokenFile]);
    assert.equal(few.code, 1);
    assert.match(few.stderr, /^bastion: --tokens \S+ holds 1 token\(s\) for 2 devices/);
  });
});

describe('examples: OTA', () => {
  test('ota-device.mjs --once installs a signed release by block transfer; a second release swaps the first to previous.bin', async () => {
    const claim = await broker.claim('sensor');
    const dir = join(broker.dir, 'example-ota');
    ok(await example('provision-with-claim.mjs', ['--url', broker.url, '--ca', broker.caFile, '--claim-cert', claim.certFile, '--claim-key', claim.keyFile, '--template', 'sensor', '--parameter', 'serialNumber=OTA-1', '--dir', dir]), 'provision-with-claim.mjs');
    ok(await broker.bastion(['ota', 'key', 'init']), 'ota key init');
    const otaDir = join(broker.dataDir, 'ota');
    const firmware = join(dir, 'firmware');
    const images: Buffer[] = [];

    async function release(version: string): Promise<{ jobId: string; releaseId: string }> {
      const bytes = randomBytes(64 * 1024);
      images.push(bytes);
      const img = join(broker.dir, `ota-${version}.bin`);
      const manifest = `${img}.manifest.json`;
      writeFileSync(img, bytes);
      ok(await broker.bastion(['ota', 'sign', img, '--class', 'thermo', '--vendor', 'acme', '--fw-version', version, '--out', manifest]), 'ota sign');
      const created = ok(await broker.bastion(['ota', 'release', 'create', img, '--manifest', manifest]), 'ota release create');
      const releaseId = /^release ([0-9a-f]+):/m.exec(created)![1]!;
      const job = ok(await broker.bastion(['ota', 'job', 'create', '--release', releaseId, '--clients', 'sensor-OTA-1']), 'ota job create');
      return { jobId: /job (job-[0-9a-f]+)/.exec(job)![1]!, releaseId };
    }
    const device = (): Promise<ProcResult> =>
      example('ota-device.mjs', ['--url', broker.url, '--ca', broker.caFile, '--dir', dir, '--root-pub', join(otaDir, 'root.pub.json'), '--keyset', join(otaDir, 'keyset.json'), '--vendor', 'acme', '--class', 'thermo', '--firmware', firmware, '--once']);

    const first = await release('1.0.0');
    const out = ok(await device(), 'ota-device.mjs');
    assert.match(out, /^connected as sensor-OTA-1$/m);
    assert.match(out, new RegExp(`^job ${first.jobId} \\(execution 1\\): release ${first.releaseId} version 1\\.0\\.0$`, 'm'));
    assert.match(out, new RegExp(`^progress ${first.jobId}: 65536/65536 bytes \\(100%\\)$`, 'm'));
    assert.match(out, new RegExp(`^installed ${first.jobId}: version 1\\.0\\.0, sequence 1$`, 'm'));
    assert.deepEqual(readFileSync(join(firmware, 'current.bin')), images[0]);
    assert.match(ok(await broker.bastion(['ota', 'job', 'show', first.jobId]), 'ota job show'), /sensor-OTA-1\s+1\s+SUCCEEDED/);

    const second = await release('2.0.0');
    assert.match(ok(await device(), 'ota-device.mjs again'), new RegExp(`^installed ${second.jobId}: version 2\\.0\\.0, sequence 2$`, 'm'));
    assert.deepEqual(readFileSync(join(firmware, 'current.bin')), images[1]);
    assert.deepEqual(readFileSync(join(firmware, 'previous.bin')), images[0]);
    assert.equal((JSON.parse(readFileSync(join(dir, 'ota', 'ota-state.json'), 'utf8')) as { lastSequence: number }).lastSequence, 2);
  });
});
