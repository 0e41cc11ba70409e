/**
 * Behaviour detection in a cluster (issue 15 item 5): two Bastion nodes on one real
 * nats-server, one CA. A device quarantined on one node is quarantined on the other when
 * it moves there; the other node's admin facade lists the alert; a release on either node
 * frees it on both; and what detection learned about a device on one node (here: its
 * known topic prefixes, past the new-behaviour warm-up) is adopted by the node it moves
 * to, so a new prefix there alarms at once instead of after a fresh warm-up.
 *
 * Windows are closed by the test (`defender.tick()` per node); waits poll with a timeout.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { setUpPki, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { endQuietly, pubackCode, until } from './support.js';

const NOT_AUTHORIZED = 0x87;
const accepted = (code: number): boolean => code === 0 || code === 0x10;

let dir: string;
let nats: SingleNats;
let a: ProvisioningBroker;
let b: ProvisioningBroker;
const eventsOf = new Map<ProvisioningBroker, SecurityEvent[]>();
const certs = new Map<string, { cert: string; key: string }>();

async function device(node: ProvisioningBroker, cn: string): Promise<MqttClient> {
  let c = certs.get(cn);
  if (c === undefined) certs.set(cn, (c = await a.clientCert(cn)));
  return node.connect({ clientId: cn, cert: c.cert, key: c.key });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-defender-'));
  nats = await startNatsServer();
  const pkiDir = join(dir, 'ca');
  await setUpPki(pkiDir);
  const node = async (nodeId: string): Promise<ProvisioningBroker> => {
    const n = await startProvisioningBroker({
      pkiFrom: pkiDir,
      cluster: { nats: { servers: [nats.url] }, nodeId },
      authz: {
        policy: 'rules',
        roles: { sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }, { effect: 'allow', action: 'publish', topic: 'telemetry/${cert.cn}/#' }] } },
        bindings: [{ role: 'sensor', attribute: 'clientId', value: 'dev-*' }],
      },
      defender: {
        detect: {
          windowSeconds: 3600,
          rules: [
            { kind: 'static', name: 'denials', metric: 'authzDenials', operator: 'gt', value: 2 },
            { kind: 'new', name: 'new-topic', subject: 'topic', warmup: 2 },
          ],
          actions: { denials: ['quarantine'] },
        },
        audit: { intervalSeconds: 0 },
      },
    });
    const events: SecurityEvent[] = [];
    n.server.broker.events.on((e) => {
      if (e.type.startsWith('defender.')) events.push(e);
    });
    eventsOf.set(n, events);
    return n;
  };
  a = await node('def-a');
  b = await node('def-b');
});

after(async () => {
  await a?.stop();
  await b?.stop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a quarantine follows the device to another node, the alert is listed there, and a release there frees it on both', async () => {
  const onA = await device(a, 'dev-q');
  try {
    for (let i = 0; i < 3; i++) assert.equal(await pubackCode(onA, `devices/other/${i}`, 5000), NOT_AUTHORIZED);
    a.server.defender.tick();
    assert.equal(await pubackCode(onA, 'devices/dev-q/t', 5000), NOT_AUTHORIZED, 'quarantined on a');
    await endQuietly(onA);
    // The same device on node b: confined there too, once the restriction reached b.
    const onB = await device(b, 'dev-q');
    try {
      await until(async () => (await pubackCode(onB, 'devices/dev-q/t', 5000)) === NOT_AUTHORIZED, 5000, 'the quarantine on node b');
      await until(() => b.server.defender.facade.listAlerts({ identity: 'dev-q' }).alerts.some((x) => x.node === 'def-a' && x.state === 'active'), 5000, "node a's alert listed on node b");
      const released = await b.server.defender.facade.release('dev-q', 'operator-on-b');
      assert.deepEqual(released.restrictions.map((r) => r.kind), ['quarantine']);
      assert.ok(accepted(await pubackCode(onB, 'devices/dev-q/t', 5000)), 'free on b');
    } finally {
      await endQuietly(onB);
    }
    // Node a lifted it too, and its alert is released (seen from b, where a's record arrives).
    const back = await device(a, 'dev-q');
    try {
      await until(async () => accepted(await pubackCode(back, 'devices/dev-q/t', 5000)), 5000, 'free on a');
    } finally {
      await endQuietly(back);
    }
    await until(() => b.server.defender.facade.listAlerts({ identity: 'dev-q' }).alerts.some((x) => x.node === 'def-a' && x.state === 'released'), 5000, "a's alert released");
    assert.ok(eventsOf.get(a)!.some((e) => e.type === 'defender.action' && e.identity === 'dev-q' && e.outcome === 'released'), 'the release is audited on node a');
  } finally {
    await endQuietly(onA);
  }
});

test('what a node learned about a device travels with it: a new topic prefix on the next node alarms without a new warm-up', async () => {
  const onA = await device(a, 'dev-l');
  for (let i = 0; i < 3; i++) {
    assert.ok(accepted(await pubackCode(onA, 'devices/dev-l/temp', 5000)));
    a.server.defender.tick();
  }
  await endQuietly(onA);
  const onB = await device(b, 'dev-l');
  try {
    await until(() => (b.server.defender.detector?.exportState('dev-l')?.datapoints ?? 0) >= 3, 5000, "node a's learned state adopted by node b");
    assert.ok(accepted(await pubackCode(onB, 'telemetry/dev-l/x', 5000)));
    b.server.defender.tick();
    const alarm = eventsOf.get(b)!.find((e) => e.type === 'defender.alarm' && e.identity === 'dev-l' && e.rule === 'new-topic');
    assert.ok(alarm !== undefined && alarm.type === 'defender.alarm', 'new-topic alarm on node b');
    assert.deepEqual(alarm.items, ['telemetry']);
  } finally {
    await endQuietly(onB);
  }
});

test('rules replaced through one node are taken by the other, and a reset too', async () => {
  await a.server.defender.facade.setRules({ rules: [{ kind: 'static', name: 'cluster-wide', metric: 'connects', operator: 'gt', value: 9 }] }, 'operator-on-a');
  await until(() => b.server.defender.facade.rules().rules.map((r) => r.name).join() === 'cluster-wide', 5000, 'the rules on node b');
  assert.equal(b.server.defender.facade.rules().setBy, 'operator-on-a');
  await a.server.defender.facade.resetRules('operator-on-a');
  await until(() => b.server.defender.facade.rules().source === 'config', 5000, 'the reset on node b');
  assert.deepEqual(b.server.defender.facade.rules().rules.map((r) => r.name), ['denials', 'new-topic']);
});
