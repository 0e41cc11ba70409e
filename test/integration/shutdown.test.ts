/**
 * The `bastion serve` process from the outside: graceful shutdown on SIGTERM and SIGINT
 * (v5 clients get DISCONNECT 0x8B Server shutting down, wills of connected clients reach
 * connected subscribers first, exit code 0), config errors (non-zero exit, one readable
 * stderr line naming the key), and the zero-config start (development PKI with private
 * keys 0600, and the printed mosquitto_sub / mosquitto_pub command lines work as printed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { IDisconnectPacket, IClientOptions, MqttClient } from 'mqtt';
import { BASTION_MAIN, connectMqtt, endQuietly, freePort, Inbox, killAllProcs, Proc, run, startBrokerProcess, writePlainConfig } from './support.js';

const dirs: string[] = [];
const clients: MqttClient[] = [];

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

after(async () => {
  await Promise.all(clients.map((c) => endQuietly(c)));
  await killAllProcs();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});


type Event = { kind: 'message'; topic: string; payload: string } | { kind: 'disconnect'; reasonCode: number | undefined } | { kind: 'close' };

/** Connects and records messages, the server's DISCONNECT and the close, in order. */
async function observed(port: number, opts: IClientOptions): Promise<{ client: MqttClient; events: Inbox<Event> }> {
  const events = new Inbox<Event>();
  const client = await connectMqtt(`mqtt://127.0.0.1:${port}`, opts, 5000, (c) => {
    c.on('message', (topic, payload) => events.push({ kind: 'message', topic, payload: payload.toString() }));
    c.on('disconnect', (p: IDisconnectPacket) => events.push({ kind: 'disconnect', reasonCode: p.reasonCode }));
    c.on('close', () => events.push({ kind: 'close' }));
    c.on('error', () => undefined);
  });
  clients.push(client);
  return { client, events };
}

const closed = (items: Event[]): boolean => items.some((e) => e.kind === 'close');

describe('graceful shutdown', () => {
  test('SIGTERM: wills reach a connected subscriber, then v5 clients get DISCONNECT 0x8B; exit code 0', async () => {
    const dir = tempDir('bastion-sigterm-');
    const broker = await startBrokerProcess(['-c', writePlainConfig(dir, await freePort())]);
    const sub = await observed(broker.port, { clientId: 'watcher', protocolVersion: 5 });
    await sub.client.subscribeAsync('last/will/#', { qos: 1 });
    const v5 = await observed(broker.port, {
      clientId: 'dying-v5',
      protocolVersion: 5,
      will: { topic: 'last/will/v5', payload: Buffer.from('v5 will'), qos: 1, retain: false },
    });
    const v311 = await observed(broker.port, {
      clientId: 'dying-v311',
      protocolVersion: 4,
      will: { topic: 'last/will/v311', payload: Buffer.from('v311 will'), qos: 1, retain: false },
    });

    broker.proc.kill('SIGTERM');
    const exit = await broker.proc.waitExit(10000);
    assert.equal(exit.code, 0, `exit code; stderr:\n${exit.stderr}`);
    assert.equal(exit.signal, null);

    const subEvents = await sub.events.waitFor(closed, 5000, 'the subscriber to be closed');
    // Both wills arrived, and before the subscriber's own DISCONNECT.
    assert.deepEqual(
      subEvents.map((e) => (e.kind === 'message' ? `${e.topic}=${e.payload}` : e.kind === 'disconnect' ? `disconnect 0x${e.reasonCode?.toString(16)}` : e.kind)),
      ['last/will/v5=v5 will', 'last/will/v311=v311 will', 'disconnect 0x8b', 'close'],
    );
    const v5Events = await v5.events.waitFor(closed, 5000, 'the v5 client to be closed');
    assert.deepEqual(v5Events, [{ kind: 'disconnect', reasonCode: 0x8b }, { kind: 'close' }]);
    // MQTT 3.1.1 has no server DISCONNECT: the connection just closes.
    const v311Events = await v311.events.waitFor(closed, 5000, 'the v3.1.1 client to be closed');
    assert.deepEqual(v311Events, [{ kind: 'close' }]);
  });

  test('SIGINT: DISCONNECT 0x8B and exit code 0', async () => {
    const dir = tempDir('bastion-sigint-');
    const broker = await startBrokerProcess(['-c', writePlainConfig(dir, await freePort())]);
    const c = await observed(broker.port, { clientId: 'interrupted', protocolVersion: 5 });
    broker.proc.kill('SIGINT');
    const exit = await broker.proc.waitExit(10000);
    assert.equal(exit.code, 0, `exit code; stderr:\n${exit.stderr}`);
    assert.deepEqual(await c.events.waitFor(closed, 5000, 'the client to be closed'), [{ kind: 'disconnect', reasonCode: 0x8b }, { kind: 'close' }]);
  });

  test('SIGTERM with no client connected: exit code 0', async () => {
    const dir = tempDir('bastion-idle-');
    const broker = await startBrokerProcess(['-c', writePlainConfig(dir, await freePort())]);
    broker.proc.kill('SIGTERM');
    assert.equal((await broker.proc.waitExit(10000)).code, 0);
  });
});

describe('config errors: non-zero exit, one readable stderr line naming the key', () => {
  const cases: Array<{ name: string; yaml: (port: number) => string[]; key: RegExp }> = [
    {
      name: 'a plaintext listener without insecure: true',
      yaml: (port) => ['listeners:', '  - name: plain', '    protocol: mqtt', `    port: ${port}`, '    allowAnonymous: true'],
      key: /listeners\[0\]\.insecure/,
    },
    {
      name: 'an unknown top-level key',
      yaml: (port) => ['listeners:', '  - name: plain', '    protocol: mqtt', `    port: ${port}`, '    insecure: true', 'persistance:', '  enabled: true'],
      key: /persistance/,
    },
    {
      name: 'an unknown key inside a section',
      yaml: (port) => ['listeners:', '  - name: plain', '    protocol: mqtt', `    port: ${port}`, '    insecure: true', 'mqtt:', '  maxQoS: 1'],
      key: /mqtt.*maxQoS/,
    },
    {
      name: 'an mqtts listener without tls',
      yaml: (port) => ['listeners:', '  - name: secure', '    protocol: mqtts', `    port: ${port}`],
      key: /listeners\[0\]\.tls/,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const dir = tempDir('bastion-badconfig-');
      const path = join(dir, 'bastion.yaml');
      writeFileSync(path, [`dataDir: ${JSON.stringify(join(dir, 'data'))}`, ...c.yaml(await freePort()), ''].join('\n'));
      const r = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', path], { timeoutMs: 10000 });
      assert.notEqual(r.code, 0, 'exit code');
      const lines = r.stderr.split('\n').filter((l) => l.length > 0);
      assert.equal(lines.length, 1, `exactly one stderr line, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^bastion: config error/);
      assert.match(lines[0]!, c.key);
      assert.doesNotMatch(r.stdout, /listening/);
    });
  }
});

describe('zero-config `bastion serve`', () => {
  test('creates a development PKI (keys 0600) and prints mosquitto command lines that work as printed', async () => {
    const cwd = tempDir('bastion-zeroconf-');
    const port = await freePort();
    const broker = await startBrokerProcess(['--data-dir', 'bastion-data', '--port', String(port)], { cwd });
    assert.equal(broker.port, port);
    assert.match(broker.proc.stderr, /Created a PKI \(root CA, intermediate CA, server and demo device certificates\) in /);
    assert.match(broker.proc.stderr, new RegExp(`Bastion listening on mqtts://127\\.0\\.0\\.1:${port} `));
    await broker.proc.waitForOutput(/^\s*mosquitto_pub .*$/m, 5000, 'stderr');

    // The PKI: private directory, private keys, readable certificates.
    const pkiDir = join(cwd, 'bastion-data', 'pki');
    assert.equal(statSync(pkiDir).mode & 0o777, 0o700);
    const files = readdirSync(pkiDir)
      .filter((f) => !f.startsWith('inventory.db-')) // SQLite's WAL files while the broker has it open
      .sort();
    assert.deepEqual(files, [
      'ca-chain.crt',
      'crl.pem',
      'device-demo.crt',
      'device-demo.key',
      'intermediate.crt',
      'intermediate.key',
      'inventory.db',
      'root.crt',
      'root.key',
      'server.crt',
      'server.key',
    ]);
    for (const f of files) {
      const mode = statSync(join(pkiDir, f)).mode & 0o777;
      if (f.endsWith('.key')) assert.equal(mode, 0o600, `${f} mode ${mode.toString(8)}`);
      else assert.equal(mode & 0o022, 0, `${f} is not writable by others`);
    }

    const subLine = broker.proc.stderr.match(/^\s*(mosquitto_sub .*)$/m)?.[1];
    const pubLine = broker.proc.stderr.match(/^\s*(mosquitto_pub .*)$/m)?.[1];
    assert.ok(subLine !== undefined && pubLine !== undefined, broker.proc.stderr);
    assert.match(subLine, new RegExp(`-p ${port} `));
    assert.match(pubLine, new RegExp(`-p ${port} `));

    // Run exactly what was printed, through a shell, from the same directory. The
    // subscriber gets `-C 1 -W 5` to end, and `-d` under `stdbuf -oL` so the test can see
    // its SUBACK before publishing.
    const sub = Proc.spawn('sh', ['-c', `exec stdbuf -oL ${subLine} -C 1 -W 5 -d`], { cwd, label: subLine });
    sub.child.stdin?.end();
    await sub.waitForOutput(/received SUBACK/, 10000);
    const pub = await run('sh', ['-c', pubLine], { cwd, timeoutMs: 10000 });
    assert.equal(pub.code, 0, `printed mosquitto_pub failed:\n${pub.stdout}\n${pub.stderr}`);
    const subExit = await sub.waitExit(10000);
    assert.equal(subExit.code, 0, `printed mosquitto_sub failed:\n${subExit.stdout}\n${subExit.stderr}`);
    assert.match(subExit.stdout, /^devices\/device-demo\/hello hello, secure world$/m);

    // The printed command for the next device works as printed, and that device connects.
    const nextLine = broker.proc.stderr.match(/^\s*(\S.* cert issue --profile client --cn device-2.*)$/m)?.[1];
    assert.ok(nextLine !== undefined, broker.proc.stderr);
    const issued = await run('sh', ['-c', nextLine.replace(/^node /, `${JSON.stringify(process.execPath)} `)], { cwd, timeoutMs: 15000 });
    assert.equal(issued.code, 0, issued.stderr);
    const next = Proc.spawn('sh', ['-c', `exec ${pubLine.replace('devices/device-demo/', 'devices/device-2/').replace(/--cert \S+/, `--cert ${join('bastion-data', 'pki', 'issued', 'device-2.crt')}`).replace(/--key \S+/, `--key ${join('bastion-data', 'pki', 'issued', 'device-2.key')}`)}`], { cwd, label: 'device-2 pub' });
    next.child.stdin?.end();
    assert.equal((await next.waitExit(10000)).code, 0, next.stderr);

    broker.proc.kill('SIGTERM');
    assert.equal((await broker.proc.waitExit(10000)).code, 0);
  });
});
