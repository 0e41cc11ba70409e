/**
 * `bastion acl` as an operator meets it, as child processes against a zero-config broker
 * process: explain and lint on the default policy, role/rule/bind changes in the data
 * dir that the running broker picks up (no restart), and the default policy seen by
 * mosquitto_pub/_sub and paho (3.1.1: a denied publish is acknowledged and dropped).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteAclStore } from '../../src/store/sqlite/acl-store.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, PAHO_DIR, Proc, pubackCode, run, startBrokerProcess, type BrokerProcess } from './support.js';

const WAIT = 10_000;
let cwd: string;
let broker: BrokerProcess;
let pki: string;

function acl(args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [BASTION_MAIN, 'acl', ...args], { cwd, timeoutMs: 20_000 });
}

function tlsArgs(): string[] {
  return ['-h', 'localhost', '-p', String(broker.port), '--cafile', join(pki, 'root.crt'), '--cert', join(pki, 'device-demo.crt'), '--key', join(pki, 'device-demo.key')];
}

/** The rule store's change counter, read as the broker reads it. */
function storeCounter(): number {
  const store = SqliteAclStore.open(join(cwd, 'bastion-data', 'authz.db'));
  try {
    return store.changeCounter();
  } finally {
    store.close();
  }
}

/** Waits for the broker's reload line at `counter` (it logs the counter it loaded). */
async function reloadedAt(counter: number): Promise<void> {
  await broker.proc.waitForOutput(new RegExp(`"counter":${counter},[^\n]*"msg":"ACL rules reloaded"`), WAIT, 'stderr');
}

before(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'bastion-acl-cli-'));
  broker = await startBrokerProcess(['--port', '0', '--log-level', 'info'], { cwd });
  pki = join(cwd, 'bastion-data', 'pki');
});
after(async () => {
  await broker.proc.stop();
  rmSync(cwd, { recursive: true, force: true });
});

describe('explain and lint on the default policy', () => {
  test('explain: allow by the device rule, deny by default for another device, JSON form', async () => {
    const cert = join(pki, 'device-demo.crt');
    const allowed = await acl(['explain', '--client-id', 'device-demo', '--cert', cert, '--publish', 'devices/device-demo/temp']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout, 'ALLOW publish devices/device-demo/temp\n  decided by role "device" rule #0: allow all devices/${cert.cn}/#\n  roles: device\n  quota: limits.client (no role with a quota is bound)\n');
    const denied = await acl(['explain', '--client-id', 'device-demo', '--cert', cert, '--publish', 'devices/device-2/cmd']);
    assert.equal(denied.stdout, 'DENY publish devices/device-2/cmd\n  no rule matched (default deny)\n  roles: device\n  quota: limits.client (no role with a quota is bound)\n');
    const sub = await acl(['explain', '--client-id', 'device-demo', '--cert', cert, '--subscribe', 'broadcast/#', '--json']);
    const parsed = JSON.parse(sub.stdout) as { decision: string; rule: { role: string; index: number }; qos: number };
    assert.deepEqual([parsed.decision, parsed.rule.role, parsed.rule.index, parsed.qos], ['allow', 'device', 1, 2]);
    const anonymous = await acl(['explain', '--client-id', 'nobody', '--subscribe', 'devices/+/#']);
    assert.match(anonymous.stdout, /^DENY subscribe devices\/\+\/#\n  no rule matched \(default deny\)\n  roles: \(none\)\n  quota: limits\.client \(no role with a quota is bound\)\n$/);
  });

  test('explain: bad input is one stderr line and a non-zero exit', async () => {
    for (const args of [
      ['explain', '--client-id', 'x', '--publish', 'a/+'],
      ['explain', '--client-id', 'x'],
      ['explain', '--client-id', 'x', '--cert', join(cwd, 'missing.crt'), '--publish', 'a'],
    ]) {
      const r = await acl(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^bastion: /);
    }
  });

  test('lint: the default policy has no findings (exit 0); a bad config has errors (exit 1)', async () => {
    const clean = await acl(['lint']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(clean.stdout, 'no findings\n');
    const config = join(cwd, 'bad.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${JSON.stringify(join(cwd, 'bad-data'))}`,
        'listeners:',
        '  - { name: plain, protocol: mqtt, port: 0, insecure: true, allowAnonymous: true }',
        'authz:',
        '  roles:',
        '    device:',
        '      rules:',
        '        - { effect: allow, action: all, topic: "#" }',
        '        - { effect: allow, action: publish, topic: "devices/+/cmd" }',
        '        - { effect: allow, action: publish, topic: "$SYS/broker/x" }',
        '  bindings:',
        '    - { role: device, attribute: cert.cn, value: "*" }',
        '',
      ].join('\n'),
    );
    const bad = await acl(['lint', '--config', config]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.equal(
      bad.stdout,
      [
        'error: role "device" rule #0 (allow all #): too broad for a role bound to devices: every device may reach every topic',
        'warning: role "device" rule #1 (allow publish devices/+/cmd): lets one device publish to another\'s topics: put ${clientId} or ${cert.cn} where the wildcard is',
        'error: role "device" rule #2 (allow publish $SYS/broker/x): write access to $SYS topics: they belong to the broker',
        '2 error(s), 1 warning(s)',
        '',
      ].join('\n'),
    );
    const json = JSON.parse((await acl(['lint', '--config', config, '--json'])).stdout) as { findings: unknown[] };
    assert.equal(json.findings.length, 3);
  });
});

describe('rules changed by the CLI while the broker runs', () => {
  test('role, rule and binding added in the data dir take effect without a restart; deleting the binding revokes', async () => {
    const device = { ca: readFileSync(join(pki, 'root.crt')), cert: readFileSync(join(pki, 'device-demo.crt')), key: readFileSync(join(pki, 'device-demo.key')) };
    const client = await connectMqtt(`mqtts://localhost:${broker.port}`, { ...device, clientId: 'device-demo', protocolVersion: 5 });
    try {
      assert.equal(await pubackCode(client, 'sensors/device-demo', WAIT), 0x87);
      for (const args of [
        ['role', 'add', 'sensors'],
        ['rule', 'add', 'sensors', 'allow', 'publish', 'sensors/${cert.cn}', '--max-qos', '1', '--no-retain'],
        ['bind', 'add', 'sensors', 'cert.cn', 'device-demo'],
      ]) {
        const r = await acl(args);
        assert.equal(r.code, 0, r.stderr);
      }
      // The broker polls the store's change counter: wait for its reload at this counter.
      await reloadedAt(storeCounter());
      // Allowed now (0x10: nobody subscribes).
      const afterAdd = await pubackCode(client, 'sensors/device-demo', WAIT);
      assert.equal(afterAdd, 0x10);
      const listed = await acl(['rule', 'list', 'sensors']);
      assert.equal(listed.stdout, 'sensors #0 allow publish sensors/${cert.cn} maxQos=1 retain=false\n');
      const bindings = await acl(['bind', 'list']);
      assert.match(bindings.stdout, /^sensors cert\.cn=device-demo \(store\)$/m);
      assert.match(bindings.stdout, /^device cert\.cn=\* \(default\)$/m);
      const explained = await acl(['explain', '--client-id', 'device-demo', '--cert', join(pki, 'device-demo.crt'), '--publish', 'sensors/device-demo']);
      assert.match(explained.stdout, /^ALLOW publish sensors\/device-demo\n  decided by role "sensors" rule #0/);

      const del = await acl(['bind', 'del', 'sensors', 'cert.cn', 'device-demo']);
      assert.equal(del.code, 0, del.stderr);
      await reloadedAt(storeCounter());
      assert.equal(await pubackCode(client, 'sensors/device-demo', WAIT), 0x87);
    } finally {
      await endQuietly(client);
    }
  });

  test('store commands refuse bad input with one line: unknown role, default role, bad effect, bad topic', async () => {
    for (const [args, re] of [
      [['rule', 'add', 'ghost', 'allow', 'publish', 'x'], /no role "ghost"/],
      [['rule', 'add', 'device', 'allow', 'publish', 'x'], /defined in the config file/],
      [['role', 'add', 'tmp'], null],
      [['rule', 'add', 'tmp', 'permit', 'publish', 'x'], /invalid effect "permit"/],
      [['rule', 'add', 'tmp', 'allow', 'publish', 'a/#/b'], /not a valid MQTT topic filter/],
      [['bind', 'add', 'tmp', 'cert.o', 'x'], /invalid attribute "cert.o"/],
      [['role', 'del', 'tmp'], null],
      [['role', 'del', 'tmp'], /no role "tmp"/],
    ] as Array<[string[], RegExp | null]>) {
      const r = await acl(args);
      if (re === null) {
        assert.equal(r.code, 0, r.stderr);
        continue;
      }
      assert.notEqual(r.code, 0, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});

describe('the default policy seen by third-party clients', () => {
  test('mosquitto: another device\'s topic is refused (v5 PUBACK Not authorized, SUBACK denied); own topics work', async () => {
    const pub = await run('mosquitto_pub', [...tlsArgs(), '-V', 'mqttv5', '-q', '1', '-t', 'devices/device-2/cmd', '-m', 'x'], { timeoutMs: WAIT });
    assert.match(pub.stderr, /Publish 1 failed: Not authorized/);
    for (const v of ['mqttv5', 'mqttv311']) {
      const sub = await run('mosquitto_sub', [...tlsArgs(), '-V', v, '-t', 'devices/device-2/#', '-C', '1', '-W', '5'], { timeoutMs: WAIT });
      assert.match(sub.stderr, /All subscription requests were denied/, v);
    }
    const own = await run('mosquitto_pub', [...tlsArgs(), '-V', 'mqttv5', '-q', '1', '-t', 'devices/device-demo/ok', '-m', 'x'], { timeoutMs: WAIT });
    assert.equal(own.code, 0, own.stderr);
    assert.doesNotMatch(own.stderr, /failed/);
  });

  test('paho 3.1.1: a denied publish is still acknowledged (and dropped); a denied subscription is granted 128', async () => {
    const events = new Inbox<Record<string, unknown>>();
    const args = [join(PAHO_DIR, 'paho_agent.py'), '--port', String(broker.port), '--cafile', join(pki, 'root.crt'), '--cert', join(pki, 'device-demo.crt'), '--key', join(pki, 'device-demo.key')];
    const agent = Proc.spawn('/usr/bin/python3', [...args, '--client-id', 'paho-demo', '--protocol', '311', '--clean', '1'], { label: 'paho 311' });
    let buffered = '';
    agent.child.stdout!.on('data', (d: Buffer | string) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line.length > 0) events.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    try {
      await events.waitFor((e) => e.some((x) => x.event === 'connected'), WAIT, 'paho CONNACK');
      const send = (cmd: Record<string, unknown>): void => void agent.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
      send({ op: 'subscribe', topic: 'devices/device-2/#', qos: 1 });
      const subacks = await events.waitFor((e) => e.some((x) => x.event === 'subscribed'), WAIT, 'SUBACK');
      assert.deepEqual(subacks.find((x) => x.event === 'subscribed')!.granted, [128]);
      send({ op: 'subscribe', topic: 'devices/device-demo/#', qos: 1 });
      await events.waitFor((e) => e.filter((x) => x.event === 'subscribed').length === 2, WAIT, 'second SUBACK');
      send({ op: 'publish', ref: 'denied', topic: 'devices/device-2/cmd', payload: 'x', qos: 1, retain: false });
      await events.waitFor((e) => e.some((x) => x.event === 'published' && x.ref === 'denied'), WAIT, 'PUBACK of the denied publish');
      send({ op: 'publish', ref: 'own', topic: 'devices/device-demo/paho', payload: 'y', qos: 1, retain: false });
      const got = await events.waitFor((e) => e.some((x) => x.event === 'message'), WAIT, 'own message');
      assert.deepEqual(got.filter((x) => x.event === 'message').map((x) => x.topic), ['devices/device-demo/paho']);
      await broker.proc.waitForOutput(/"topic":"devices\/device-2\/cmd"[^\n]*"publish denied"/, WAIT, 'stderr');
    } finally {
      agent.child.stdin!.end();
      await agent.waitExit(WAIT).catch(() => agent.stop());
    }
  });
});
