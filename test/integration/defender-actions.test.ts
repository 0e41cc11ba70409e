/**
 * Behaviour detection wired into the real broker (issue 15 items 1–3): mTLS clients with
 * certificates from the broker's own PKI do things, a window closes (the test ticks it, so
 * no test waits 30 s), and the alarm's actions are seen on the wire: the alert on
 * `$bastion/alerts/…`, a quarantined device refused everywhere but its quarantine topic, a
 * throttled one answered 0x97, a disconnect and a ban, each lifted again by a release
 * (through the facade, and through defender.db as the CLI writes it), a quarantine that
 * survives a restart, dry-run, and the webhook.
 */
import { strict as assert } from 'node:assert';
import { createServer, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { openDefenderStore } from '../../src/store/sqlite/defender-store.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, endQuietly, inboxOf, nextEvent, pubackCode, run, until, withTimeout, type Inbox, type Received } from './support.js';

const NOT_AUTHORIZED = 0x87;
const QUOTA_EXCEEDED = 0x97;
const accepted = (code: number): boolean => code === 0 || code === 0x10;

/** Rules with small thresholds, each with its own action; windows are closed by the test. */
function defenderSection(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    detect: {
      windowSeconds: 3600,
      rules: [
        { kind: 'static', name: 'denials', metric: 'authzDenials', operator: 'gt', value: 2 },
        { kind: 'static', name: 'chatty', metric: 'messagesSent', operator: 'gt', value: 30 },
        { kind: 'static', name: 'storm', metric: 'connects', operator: 'gt', value: 3 },
        { kind: 'static', name: 'reader', metric: 'messagesReceived', operator: 'gt', value: 20 },
      ],
      actions: { denials: ['quarantine'], chatty: ['throttle'], storm: ['disconnect', 'ban'] },
      ...extra,
    },
    audit: { intervalSeconds: 0 },
  };
}

const AUTHZ = {
  policy: 'rules',
  roles: {
    sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] },
    operator: { rules: [{ effect: 'allow', action: 'subscribe', topic: '$bastion/alerts/#' }, { effect: 'allow', action: 'subscribe', topic: '$bastion/quarantine/#' }] },
  },
  bindings: [
    { role: 'operator', attribute: 'cert.cn', value: 'ops' },
    { role: 'sensor', attribute: 'clientId', value: 'dev-*' },
  ],
};

interface Harness {
  broker: ProvisioningBroker;
  events: SecurityEvent[];
  device(cn: string, clientId?: string): Promise<MqttClient>;
}

/** Certificates by broker directory and common name: a restarted broker's PKI already issued them. */
const issued = new Map<string, { cert: string; key: string }>();

async function harness(broker: ProvisioningBroker): Promise<Harness> {
  const events: SecurityEvent[] = [];
  broker.server.broker.events.on((e) => {
    if (e.type.startsWith('defender.')) events.push(e);
  });
  return {
    broker,
    events,
    async device(cn, clientId = cn) {
      let c = issued.get(`${broker.dir}/${cn}`);
      if (c === undefined) issued.set(`${broker.dir}/${cn}`, (c = await broker.clientCert(cn)));
      return broker.connect({ clientId, cert: c.cert, key: c.key });
    },
  };
}

/** Publishes `n` QoS 0 messages and waits until the broker has them (a QoS 1 marker after them). */
async function publishMany(client: MqttClient, topic: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) client.publish(topic, `m${i}`, { qos: 0 });
  await withTimeout(client.publishAsync(topic, 'marker', { qos: 1 }), 5000, 'marker PUBACK').catch(() => undefined);
}

async function alertOn(inbox: Inbox<Received>, rule: string, identity: string, state = 'ALARM'): Promise<{ state: string; alert: { id: number; rule: string; identity: string; actions: Array<{ action: string; outcome: string }> } }> {
  const topic = `$bastion/alerts/${rule}/${identity}`;
  const items = await inbox.waitFor((all) => all.some((m) => m.topic === topic && JSON.parse(m.payload).state === state), 5000, `${state} on ${topic}`);
  return JSON.parse(items.filter((m) => m.topic === topic && JSON.parse(m.payload).state === state).at(-1)!.payload);
}

describe('defender actions on a real broker', () => {
  let h: Harness;
  let ops: MqttClient;
  let opsInbox: Inbox<Received>;

  before(async () => {
    h = await harness(await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection() }));
    ops = await h.device('ops');
    opsInbox = inboxOf(ops);
    await ops.subscribeAsync(['$bastion/alerts/#', '$bastion/quarantine/#'], { qos: 1 });
  });
  after(async () => {
    await endQuietly(ops);
    await h.broker.stop();
  });

  test('denials → ALARM on $bastion/alerts, quarantine confines the device, a release frees it', async () => {
    const dev = await h.device('dev-q');
    try {
      assert.ok(accepted(await pubackCode(dev, 'devices/dev-q/t', 5000)), 'allowed before');
      for (let i = 0; i < 3; i++) assert.equal(await pubackCode(dev, `devices/other/${i}`, 5000), NOT_AUTHORIZED);
      h.broker.server.defender.tick();
      const msg = await alertOn(opsInbox, 'denials', 'dev-q');
      assert.equal(msg.alert.rule, 'denials');
      assert.deepEqual(msg.alert.actions.map((a) => `${a.action}:${a.outcome}`), ['quarantine:applied']);
      // Confined: its own topic refused, subscriptions refused, the quarantine topic open (and read by the operator).
      assert.equal(await pubackCode(dev, 'devices/dev-q/t', 5000), NOT_AUTHORIZED);
      await assert.rejects(dev.subscribeAsync('devices/dev-q/in', { qos: 1 }), /Not authorized/, 'SUBACK 0x87');
      assert.ok(accepted(await pubackCode(dev, '$bastion/quarantine/dev-q', 5000)));
      await opsInbox.waitFor((all) => all.some((m) => m.topic === '$bastion/quarantine/dev-q'), 5000, 'the quarantine message at the operator');
      const alarm = h.events.find((e) => e.type === 'defender.alarm' && e.identity === 'dev-q' && e.state === 'ALARM');
      assert.ok(alarm !== undefined, 'defender.alarm event (audit log, metrics)');
      assert.ok(h.events.some((e) => e.type === 'defender.action' && e.identity === 'dev-q' && e.action === 'quarantine' && e.outcome === 'applied'));
      assert.deepEqual(h.broker.server.defender.facade.restrictions().map((r) => `${r.kind}:${r.identity}`), ['quarantine:dev-q']);

      const released = await h.broker.server.defender.facade.release('dev-q', 'test-operator');
      assert.equal(released.alerts, 1);
      assert.deepEqual(released.restrictions.map((r) => r.kind), ['quarantine']);
      assert.ok(accepted(await pubackCode(dev, 'devices/dev-q/t', 5000)), 'allowed again after the release');
      assert.ok(h.events.some((e) => e.type === 'defender.action' && e.identity === 'dev-q' && e.outcome === 'released' && e.actor === 'test-operator'));
      assert.equal(h.broker.server.defender.facade.listAlerts({ identity: 'dev-q' }).alerts[0]?.state, 'released');
    } finally {
      await endQuietly(dev);
    }
  });

  test('a chatty device is throttled on its live connection (0x97) until released', async () => {
    const dev = await h.device('dev-t');
    try {
      await publishMany(dev, 'devices/dev-t/t', 31);
      h.broker.server.defender.tick();
      await alertOn(opsInbox, 'chatty', 'dev-t');
      // The throttle quota is 1 message/s with a burst of 5: ten at once cannot all pass.
      const codes: number[] = [];
      for (let i = 0; i < 10; i++) codes.push(await pubackCode(dev, 'devices/dev-t/t', 5000));
      assert.ok(codes.includes(QUOTA_EXCEEDED), `0x97 among ${codes.join(',')}`);
      await h.broker.server.defender.facade.release('dev-t', 'test-operator');
      const after: number[] = [];
      for (let i = 0; i < 10; i++) after.push(await pubackCode(dev, 'devices/dev-t/t', 5000));
      assert.ok(after.every(accepted), `all accepted after the release: ${after.join(',')}`);
    } finally {
      await endQuietly(dev);
    }
  });

  test('a reconnect storm is disconnected and banned; a release through defender.db (as the CLI does) lets it back', async () => {
    for (let i = 0; i < 3; i++) await endQuietly(await h.device('dev-s'));
    const dev = await h.device('dev-s');
    const closed = nextEvent(dev, 'disconnect', 5000);
    h.broker.server.defender.tick();
    const packet = (await closed) as { reasonCode?: number };
    assert.equal(packet.reasonCode, 0x98, 'DISCONNECT 0x98 Administrative action');
    const msg = await alertOn(opsInbox, 'storm', 'dev-s');
    assert.deepEqual(msg.alert.actions.map((a) => `${a.action}:${a.outcome}`), ['disconnect:applied', 'ban:applied']);
    await endQuietly(dev);
    await assert.rejects(h.device('dev-s'), 'a banned certificate cannot connect');
    // Another process releases it in defender.db; the broker notices within a second.
    const store = openDefenderStore(h.broker.dataDir);
    try {
      assert.equal(store.release('dev-s', 'cli:test', Date.now()).restrictions.length, 1);
    } finally {
      store.close();
    }
    await until(async () => {
      try {
        await endQuietly(await h.device('dev-s'));
        return true;
      } catch {
        return false;
      }
    }, 5000, 'dev-s admitted again');
    assert.ok(h.events.some((e) => e.type === 'defender.action' && e.identity === 'dev-s' && e.action === 'ban' && e.outcome === 'released'));
  });

  test('deliveries are counted per identity: a device that reads a lot alarms the reader rule', async () => {
    const dev = await h.device('dev-r');
    try {
      const inbox = inboxOf(dev);
      await dev.subscribeAsync('devices/dev-r/#', { qos: 0 });
      await publishMany(dev, 'devices/dev-r/x', 21);
      await inbox.waitForCount(22, 5000, '22 deliveries');
      h.broker.server.defender.tick();
      const msg = await alertOn(opsInbox, 'reader', 'dev-r');
      assert.deepEqual(msg.alert.actions, [], 'alert only');
    } finally {
      await endQuietly(dev);
    }
  });
});

test('a quarantine survives a restart of the broker', async () => {
  let broker = await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection() });
  try {
    const h = await harness(broker);
    let dev = await h.device('dev-p');
    for (let i = 0; i < 3; i++) await pubackCode(dev, `devices/other/${i}`, 5000);
    broker.server.defender.tick();
    await until(() => h.events.some((e) => e.type === 'defender.action' && e.action === 'quarantine'), 5000, 'quarantine');
    await endQuietly(dev);
    broker = await broker.restart();
    const h2 = await harness(broker);
    dev = await h2.device('dev-p');
    assert.equal(await pubackCode(dev, 'devices/dev-p/t', 5000), NOT_AUTHORIZED, 'still quarantined after the restart');
    await endQuietly(dev);
  } finally {
    await broker.stop();
  }
});

test('a ban released with `bastion defender release` while the broker is stopped is lifted at the next start', async () => {
  let broker = await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection() });
  try {
    let h = await harness(broker);
    for (let i = 0; i < 4; i++) await endQuietly(await h.device('dev-b'));
    broker.server.defender.tick();
    await until(() => h.events.some((e) => e.type === 'defender.action' && e.action === 'ban' && e.outcome === 'applied'), 5000, 'the ban');
    await broker.server.stop();
    const cli = await run(process.execPath, [BASTION_MAIN, 'defender', 'release', 'dev-b', '--data-dir', broker.dataDir], { timeoutMs: 30_000 });
    assert.equal(cli.code, 0, cli.stderr);
    broker = await broker.restart();
    h = await harness(broker);
    // Admitted: connecting rejects while a ban on its certificate is in the list.
    await endQuietly(await h.device('dev-b'));
    assert.deepEqual(broker.server.defender.facade.restrictions(), []);
  } finally {
    await broker.stop();
  }
});

/** One HTTPS request to the broker's admin API with a bearer token; the status and the body. */
function adminCall(b: ProvisioningBroker, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: b.adminPort!, servername: 'localhost', path, method, ca: b.caPem, agent: false, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(body !== undefined ? JSON.stringify(body) : undefined);
  });
}

test('through the admin API of the running broker: the alert is listed, counted in /metrics, and released', async () => {
  const broker = await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection(), admin: {} });
  try {
    const h = await harness(broker);
    const created = await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'soc', '--data-dir', broker.dataDir], { timeoutMs: 20_000 });
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    const dev = await h.device('dev-api');
    for (let i = 0; i < 3; i++) await pubackCode(dev, `devices/other/${i}`, 5000);
    broker.server.defender.tick();
    const listed = await adminCall(broker, token, 'GET', '/api/v1/defender/alerts?state=active');
    assert.equal(listed.status, 200, listed.text);
    const page = JSON.parse(listed.text) as { total: number; alerts: Array<{ rule: string; identity: string; actions: Array<{ action: string }> }> };
    assert.deepEqual(page.alerts.map((a) => `${a.rule}:${a.identity}:${a.actions.map((x) => x.action).join('+')}`), ['denials:dev-api:quarantine']);
    const metrics = await adminCall(broker, token, 'GET', '/metrics');
    assert.match(metrics.text, /^bastion_defender_alarms_total\{rule="denials"\} 1$/m);
    assert.match(metrics.text, /^bastion_defender_actions_total\{action="quarantine",outcome="applied"\} 1$/m);
    const rules = JSON.parse((await adminCall(broker, token, 'GET', '/api/v1/defender/rules')).text) as { actions: Record<string, string[]> };
    assert.deepEqual(rules.actions.denials, ['alert', 'quarantine']);
    assert.equal(await pubackCode(dev, 'devices/dev-api/t', 5000), NOT_AUTHORIZED);
    const released = await adminCall(broker, token, 'POST', '/api/v1/defender/release', { identity: 'dev-api' });
    assert.equal(released.status, 200, released.text);
    assert.ok(accepted(await pubackCode(dev, 'devices/dev-api/t', 5000)), 'free after the API release');
    assert.equal((await adminCall(broker, token, 'POST', '/api/v1/defender/release', { identity: 'dev-api' })).status, 404, 'nothing left to release');
    await endQuietly(dev);

    // Rules replaced at run time: a rule on subscriptions that disconnects; it judges the very next window.
    const put = await adminCall(broker, token, 'PUT', '/api/v1/defender/rules', { rules: [{ kind: 'static', name: 'subs', metric: 'subscribes', operator: 'gt', value: 2 }], actions: { subs: ['disconnect'] } });
    assert.equal(put.status, 200, put.text);
    const sub = await h.device('dev-sub');
    for (let i = 0; i < 3; i++) await sub.subscribeAsync(`devices/dev-sub/${i}`, { qos: 0 });
    const gone = nextEvent(sub, 'disconnect', 5000);
    broker.server.defender.tick();
    assert.equal(((await gone) as { reasonCode?: number }).reasonCode, 0x98, 'the new rule disconnected it');
    await endQuietly(sub);
  } finally {
    await broker.stop();
  }
});

test('rules set through the API survive a restart, until reset', async () => {
  let broker = await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection() });
  try {
    await broker.server.defender.facade.setRules({ rules: [{ kind: 'static', name: 'only', metric: 'connects', operator: 'gt', value: 50 }] }, 'test');
    broker = await broker.restart();
    const view = broker.server.defender.facade.rules();
    assert.equal(view.source, 'api');
    assert.deepEqual(view.rules.map((r) => r.name), ['only']);
    await assert.rejects(broker.server.defender.facade.setRules({ rules: [{ kind: 'nope', name: 'x' }] }, 'test'), /rules error/);
    assert.deepEqual(broker.server.defender.facade.rules().rules.map((r) => r.name), ['only'], 'a bad document changes nothing');
    const reset = await broker.server.defender.facade.resetRules('test');
    assert.equal(reset.source, 'config');
    assert.deepEqual(reset.rules.map((r) => r.name), ['denials', 'chatty', 'storm', 'reader']);
  } finally {
    await broker.stop();
  }
});

test('dry run records what the actions would do and does not do it; the webhook gets the alert', async () => {
  const posts: Array<{ headers: IncomingMessage['headers']; body: { state: string; alert: { rule: string; identity: string } } }> = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      posts.push({ headers: req.headers, body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  process.env.BASTION_TEST_WEBHOOK_TOKEN = 'hook-secret';
  const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`;
  const broker = await startProvisioningBroker({ authz: AUTHZ, defender: defenderSection({ dryRun: true, webhook: { url, tokenEnv: 'BASTION_TEST_WEBHOOK_TOKEN' } }) });
  try {
    const h = await harness(broker);
    const dev = await h.device('dev-d');
    for (let i = 0; i < 3; i++) await pubackCode(dev, `devices/other/${i}`, 5000);
    broker.server.defender.tick();
    await until(() => posts.length >= 1, 5000, 'the webhook POST');
    assert.equal(posts[0]!.body.state, 'ALARM');
    assert.equal(posts[0]!.body.alert.identity, 'dev-d');
    assert.equal(posts[0]!.headers.authorization, 'Bearer hook-secret');
    assert.ok(accepted(await pubackCode(dev, 'devices/dev-d/t', 5000)), 'not quarantined in dry run');
    await until(() => (broker.server.defender.facade.listAlerts({ identity: 'dev-d' }).alerts[0]?.actions.length ?? 0) >= 2, 5000, 'the webhook outcome on the alert');
    const alert = broker.server.defender.facade.listAlerts({ identity: 'dev-d' }).alerts[0]!;
    assert.equal(alert.dryRun, true);
    assert.deepEqual(alert.actions.map((a) => `${a.action}:${a.outcome}`).sort(), ['quarantine:dry-run', 'webhook:applied']);
    assert.deepEqual(broker.server.defender.facade.restrictions(), []);
    await endQuietly(dev);
  } finally {
    await broker.stop();
    delete process.env.BASTION_TEST_WEBHOOK_TOKEN;
    await new Promise<void>((r) => hook.close(() => r()));
  }
});
