/**
 * Provisioning refusals over MQTT (issue 13), part two: the pre-provisioning hook (a real
 * `node:https` server on loopback with a certificate from the test PKI) fails closed —
 * a denial, an answer that is not JSON, HTTP 500, no answer within its timeout, a server
 * certificate that does not verify are all HookDenied and nothing is issued; an allowing
 * hook sees the template, the parameters and the requester. The topic fence: a claim
 * (MQTT v5 and v3.1.1) cannot publish or subscribe outside the provisioning topics, a
 * device cannot renew or follow another device's certificate, a claim or a step-1
 * certificate cannot renew — all with `authz.policy: allow-all-INSECURE`, since the guard
 * sits in front of the ACL. Denials are audited (`authz.denied`, `provisioning` refused).
 *
 * No sleeps: every wait is on an answer or a packet, with a timeout; "nothing arrives" is
 * shown by a round trip that must come after it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { createCsrWithKey, normalizeSerial } from '../../src/pki/index.js';
import { PkiService } from '../../src/server/pki-service.js';
import { makeTestPki } from '../helpers/pki.js';
import { SENSOR_TEMPLATE, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import {
  accepted,
  ask,
  assertRefusalAudited,
  assertRejected,
  createStep1,
  CSR_TOPIC,
  issuedCounts,
  provisionThrough,
  pubackCode,
  registerTopic,
  renewTopic,
  subackCodes,
  withStore,
  type Answer,
  type ProvisioningEvent,
} from './provisioning-support.js';
import { withTimeout } from './support.js';

/** What the hook answers, by the serial number it is asked about (anything else: allowed). */
const HOOK_ANSWERS: Record<string, { status: number; body: string } | 'never'> = {
  DENY0001: { status: 200, body: JSON.stringify({ allowProvisioning: false }) },
  NOTJSON1: { status: 200, body: 'yes, go ahead' },
  ERR50001: { status: 500, body: JSON.stringify({ allowProvisioning: true }) },
  STRING01: { status: 200, body: JSON.stringify({ allowProvisioning: 'true' }) },
  SLOW0001: 'never',
};

type Requester = { client: MqttClient; clientId: string; serialNumber: string };

describe('provisioning refusals: the hook, the topic fence and renewal', () => {
  let b: ProvisioningBroker;
  let tmp: string;
  let hook: Server;
  const hookCalls: Array<{ contentType: string | undefined; body: Record<string, unknown> }> = [];
  const unanswered: ServerResponse[] = [];
  const provisioning: ProvisioningEvent[] = [];
  const denied: Array<Extract<SecurityEvent, { type: 'authz.denied' }>> = [];
  let stopEvents: () => void;
  const open: MqttClient[] = [];
  let seq = 0;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'bastion-refusals-access-'));
    const pki = await makeTestPki(join(tmp, 'hook-pki'));
    hook = createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        hookCalls.push({ contentType: req.headers['content-type'], body });
        const serial = String((body.parameters as Record<string, unknown> | undefined)?.serialNumber);
        const answer = HOOK_ANSWERS[serial] ?? { status: 200, body: JSON.stringify({ allowProvisioning: true }) };
        if (answer === 'never') {
          unanswered.push(res);
          return;
        }
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(hook.address() as AddressInfo).port}/pre-provision`;
    // Under allow-all-INSECURE the ACL has one role, `allow-all-INSECURE`: a template's roles must name it.
    const base = { ...SENSOR_TEMPLATE, roles: ['allow-all-INSECURE'] };
    b = await startProvisioningBroker({
      templates: {
        sensor: base,
        hooked: { ...base, commonName: 'hooked-${serialNumber}', hook: { url, ca: pki.caCert, timeoutSeconds: 1 } },
        // No `ca`: the system's trust store, which does not know the test CA.
        untrusted: { ...base, commonName: 'untrusted-${serialNumber}', hook: { url, timeoutSeconds: 1 } },
        // A role the ACL does not define.
        orphan: { ...base, commonName: 'orphan-${serialNumber}', roles: ['no-such-role'] },
      },
      authz: { policy: 'allow-all-INSECURE' },
    });
    stopEvents = b.server.broker.events.on((e) => {
      if (e.type === 'provisioning') provisioning.push(e);
      if (e.type === 'authz.denied') denied.push(e);
    });
  });
  after(async () => {
    stopEvents();
    for (const c of open) c.end(true);
    for (const res of unanswered) res.destroy();
    await b.stop();
    hook.closeAllConnections();
    await new Promise<void>((resolve) => hook.close(() => resolve()));
    rmSync(tmp, { recursive: true, force: true });
  });

  async function claimClient(template: string, protocolVersion: 4 | 5 = 5): Promise<Requester> {
    const claim = await b.claim(template);
    const clientId = `access-${++seq}`;
    const client = await b.connect({ clientId, cert: claim.cert, key: claim.key, protocolVersion });
    open.push(client);
    return { client, clientId, serialNumber: claim.serialNumber };
  }

  async function connectAs(clientId: string, cert: string, key: string, protocolVersion: 4 | 5 = 5): Promise<MqttClient> {
    const client = await b.connect({ clientId, cert, key, protocolVersion });
    open.push(client);
    return client;
  }

  /** A certificate client that is no device and no claim (allow-all lets it read every topic). */
  async function watcher(name: string): Promise<{ client: MqttClient; heard: string[] }> {
    const pki = await PkiService.open(b.pkiDir);
    let files: { certPath: string; keyPath: string };
    try {
      files = await pki.issue({ profile: 'client', commonName: name, fileStem: name });
    } finally {
      pki.close();
    }
    const client = await connectAs(name, readFileSync(files.certPath, 'utf8'), readFileSync(files.keyPath, 'utf8'));
    assert.deepEqual(await subackCodes(client, ['#', `$bastion/certs/${name}/#`]), [1, 1]);
    const heard: string[] = [];
    client.on('message', (t) => heard.push(t));
    return { client, heard };
  }

  /** Everything `w` heard up to a round trip of its own, which comes after whatever came before. */
  async function heardUntilRoundTrip(w: { client: MqttClient; heard: string[] }, name: string): Promise<string[]> {
    const ping = `devices/${name}/ping-${++seq}`;
    const arrived = new Promise<void>((resolve) => {
      const on = (t: string): void => {
        if (t !== ping) return;
        w.client.off('message', on);
        resolve();
      };
      w.client.on('message', on);
    });
    await w.client.publishAsync(ping, 'ping', { qos: 1 });
    await withTimeout(arrived, 5000, 'the watcher\'s own round trip');
    return w.heard.filter((t) => t !== ping && !t.startsWith(`devices/${name}/ping-`));
  }

  describe('the pre-provisioning hook fails closed', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['denies ({"allowProvisioning": false})', 'DENY0001', /denied/],
      ['answers something that is not JSON', 'NOTJSON1', /not JSON/],
      ['answers HTTP 500 (even with an allowing body)', 'ERR50001', /HTTP 500/],
      ['answers "true" as a string, not true', 'STRING01', /denied/],
      ['does not answer within its timeout (1 s)', 'SLOW0001', /did not answer/],
    ];
    for (const [label, serialNumber, why] of cases) {
      test(`a hook that ${label} → HookDenied 403, nothing issued`, async () => {
        const r = await claimClient('hooked');
        const { token } = await createStep1(r.client);
        const issued = await issuedCounts(b);
        const from = provisioning.length;
        const calls = hookCalls.length;
        const started = Date.now();
        const a = await ask(r.client, registerTopic('hooked'), { certificateOwnershipToken: token, parameters: { serialNumber } });
        assertRejected(a, 403, 'HookDenied');
        assert.match(String(a.body.errorMessage), why);
        if (serialNumber === 'SLOW0001') assert.ok(Date.now() - started < 4000, 'the hook\'s timeout is honoured');
        assert.equal(hookCalls.length, calls + 1, 'the hook was asked once');
        assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
        assertRefusalAudited(provisioning, from, r.clientId, 'HookDenied', 'register');
        // Nothing was spent: the same ownership token registers once the hook allows.
        accepted(await ask(r.client, registerTopic('hooked'), { certificateOwnershipToken: token, parameters: { serialNumber: `OK${serialNumber.slice(0, 6)}` } }));
      });
    }

    test('a hook whose server certificate does not verify → HookDenied 403, the hook never reached', async () => {
      const r = await claimClient('untrusted');
      const { token } = await createStep1(r.client);
      const issued = await issuedCounts(b);
      const from = provisioning.length;
      const calls = hookCalls.length;
      const a = await ask(r.client, registerTopic('untrusted'), { certificateOwnershipToken: token, parameters: { serialNumber: 'TLS00001' } });
      assertRejected(a, 403, 'HookDenied');
      assert.equal(hookCalls.length, calls, 'no HTTP request reached the hook');
      assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
      assertRefusalAudited(provisioning, from, r.clientId, 'HookDenied', 'register');
    });

    test('the hook is not asked about a request the template refuses already', async () => {
      const r = await claimClient('hooked');
      const { token } = await createStep1(r.client);
      const calls = hookCalls.length;
      assertRejected(await ask(r.client, registerTopic('hooked'), { certificateOwnershipToken: token, parameters: { serialNumber: 'lower' } }), 400, 'InvalidParameters');
      assert.equal(hookCalls.length, calls);
    });

    test('a hook that allows: the device is provisioned, and the hook saw the template, the parameters and the requester', async () => {
      const r = await claimClient('hooked');
      const calls = hookCalls.length;
      const { created, registered } = await provisionThrough(r.client, 'ALLOW001', 'hooked');
      assert.equal(registered.identity, 'hooked-ALLOW001');
      assert.equal(hookCalls.length, calls + 1);
      const call = hookCalls.at(-1)!;
      assert.match(call.contentType ?? '', /^application\/json/);
      assert.deepEqual(call.body, {
        template: 'hooked',
        parameters: { serialNumber: 'ALLOW001' },
        requester: `claim:${normalizeSerial(r.serialNumber)}`,
        clientId: r.clientId,
        certificateSerial: normalizeSerial(String(created.certificateId)),
      });
      assert.equal(withStore(b, (s) => s.device('hooked-ALLOW001')?.template), 'hooked');
    });
  });

  test(
    'a template whose role the ACL does not define: refused before anything is signed (nothing issued, no claim slot taken)',
    async () => {
      const r = await claimClient('orphan');
      const { token } = await createStep1(r.client);
      const issued = await issuedCounts(b);
      const a = await ask(r.client, registerTopic('orphan'), { certificateOwnershipToken: token, parameters: { serialNumber: 'ORPHAN01' } });
      assert.ok(a.topic.endsWith('/rejected'), JSON.stringify(a.body));
      assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
      assert.equal(withStore(b, (s) => s.claim(r.serialNumber)?.devices), 0, 'no claim slot taken');
    },
  );

  describe('a claim is fenced into the provisioning topics, whatever the ACL says (allow-all-INSECURE)', () => {
    test('MQTT v5: PUBACK 0x87 outside the provisioning requests, SUBACK 0x87 outside their answers, nothing delivered', async () => {
      const w = await watcher('watcher-v5');
      const r = await claimClient('sensor', 5);
      const from = denied.length;
      assert.equal(await pubackCode(r.client, 'devices/x'), 0x87);
      assert.equal(await pubackCode(r.client, 'devices/watcher-v5/cmd'), 0x87);
      assert.equal(await pubackCode(r.client, renewTopic('watcher-v5'), '{}'), 0x87);
      assert.equal(await pubackCode(r.client, '$bastion/provision/templates/not.a.name/provision/json', '{}'), 0x87, 'not a request topic');
      assert.equal(await pubackCode(r.client, '$bastion/provision/certificates/create-from-csr/json/accepted', '{}'), 0x87, 'an answer topic is not a request');
      assert.deepEqual(await subackCodes(r.client, ['#', '$SYS/#', '$bastion/#', '$bastion/certs/watcher-v5/#', 'devices/#']), [0x87, 0x87, 0x87, 0x87, 0x87]);
      assert.deepEqual(await heardUntilRoundTrip(w, 'watcher-v5'), [], 'the watcher heard nothing from the claim');
      const mine = denied.slice(from).filter((e) => e.clientId === r.clientId);
      assert.deepEqual(mine.filter((e) => e.action === 'publish').map((e) => e.topic).slice(0, 3), ['devices/x', 'devices/watcher-v5/cmd', renewTopic('watcher-v5')], 'each denial audited (authz.denied)');
      assert.ok(mine.some((e) => e.action === 'subscribe' && e.topic === '#'), 'the subscribe denials audited');
      // Still connected, and still able to do what a claim is for.
      assertRejected(await ask(r.client, CSR_TOPIC, { certificateSigningRequest: 'not a csr' }), 400, 'InvalidCsr');
    });

    test('MQTT v3.1.1: a publish outside is dropped (a subscriber gets nothing), SUBACK 0x80', async () => {
      const w = await watcher('watcher-v3');
      const r = await claimClient('sensor', 4);
      await r.client.publishAsync('devices/x', 'dropped', { qos: 1 });
      await r.client.publishAsync('devices/watcher-v3/cmd', 'dropped', { qos: 0 });
      await r.client.publishAsync(renewTopic('watcher-v3'), '{}', { qos: 1 });
      assert.deepEqual(await subackCodes(r.client, ['#', '$SYS/#', '$bastion/#', 'devices/#']), [0x80, 0x80, 0x80, 0x80]);
      assert.deepEqual(await heardUntilRoundTrip(w, 'watcher-v3'), [], 'the watcher heard nothing from the claim');
      assertRejected(await ask(r.client, CSR_TOPIC, { certificateSigningRequest: 'not a csr' }), 400, 'InvalidCsr');
    });
  });

  describe('renewal: a device renews its own certificate only', () => {
    let devA: { identity: string; cert: string; key: string };
    let devB: { identity: string; cert: string; key: string };
    before(async () => {
      const r = await claimClient('sensor');
      const a = await provisionThrough(r.client, 'RENEWA01');
      const bb = await provisionThrough(r.client, 'RENEWB01');
      devA = { identity: String(a.registered.identity), cert: String(a.registered.certificatePem), key: a.keyPem };
      devB = { identity: String(bb.registered.identity), cert: String(bb.registered.certificatePem), key: bb.keyPem };
    });

    test('device A cannot renew or follow device B: PUBACK 0x87, SUBACK 0x87, nothing issued, B untouched', async () => {
      const a = await connectAs(devA.identity, devA.cert, devA.key);
      const issued = await issuedCounts(b);
      const bSerial = withStore(b, (s) => s.device(devB.identity)?.certSerial);
      const { csrPem } = await createCsrWithKey({ commonName: devB.identity });
      assert.equal(await pubackCode(a, renewTopic(devB.identity), JSON.stringify({ certificateSigningRequest: csrPem })), 0x87);
      assert.deepEqual(await subackCodes(a, [`$bastion/certs/${devB.identity}/#`, '$bastion/certs/+/renew/json/accepted', '$bastion/certs/#']), [0x87, 0x87, 0x87]);
      assert.equal(await pubackCode(a, CSR_TOPIC, JSON.stringify({ certificateSigningRequest: csrPem })), 0x87, 'a device may not provision');
      assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
      assert.equal(withStore(b, (s) => s.device(devB.identity)?.certSerial), bSerial, 'B still has its certificate');
    });

    test('B renews while A listens on everything it may (#, its own certificate topics): A hears nothing of it', async () => {
      const a = await connectAs(devA.identity, devA.cert, devA.key);
      // allow-all's `#` does not reach `$` topics, so `$bastion/#` is the ACL's to refuse.
      assert.deepEqual(await subackCodes(a, ['$bastion/#', '#', `$bastion/certs/${devA.identity}/#`]), [0x87, 1, 1]);
      const heard: string[] = [];
      a.on('message', (t) => heard.push(t));
      const bClient = await connectAs(devB.identity, devB.cert, devB.key);
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      const renewed = accepted(await ask(bClient, renewTopic(devB.identity), { certificateSigningRequest: csrPem }));
      assert.match(String(renewed.certificatePem), /BEGIN CERTIFICATE/);
      const ping = `devices/${devA.identity}/ping`;
      const arrived = new Promise<void>((resolve) => a.on('message', (t) => t === ping && resolve()));
      await a.publishAsync(ping, 'ping', { qos: 1 });
      await withTimeout(arrived, 5000, 'A\'s own round trip');
      assert.deepEqual(heard.filter((t) => t !== ping), [], 'no renewal answer reached A');
    });

    test('a device renewing with a bad CSR → InvalidCsr 400 on renew/json/rejected, nothing issued, audited', async () => {
      const a = await connectAs(devA.identity, devA.cert, devA.key);
      const issued = await issuedCounts(b);
      const from = provisioning.length;
      const answer: Answer = await ask(a, renewTopic(devA.identity), { certificateSigningRequest: 'not a csr' });
      assertRejected(answer, 400, 'InvalidCsr');
      assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
      assertRefusalAudited(provisioning, from, devA.identity, 'InvalidCsr', 'renew');
    });

    test('a claim cannot renew (PUBACK 0x87), nor can a step-1 certificate renew itself', async () => {
      const r = await claimClient('sensor');
      const { csrPem } = await createCsrWithKey({ commonName: 'x' });
      const body = JSON.stringify({ certificateSigningRequest: csrPem });
      assert.equal(await pubackCode(r.client, renewTopic(devA.identity), body), 0x87);
      const step1 = await createStep1(r.client);
      const pendingCn = /CN=([^\n,]+)/.exec(new X509Certificate(String(step1.created.certificatePem)).subject)?.[1];
      assert.match(pendingCn ?? '', /^pending-/);
      const issued = await issuedCounts(b);
      const pending = await connectAs(`access-pending-${++seq}`, String(step1.created.certificatePem), step1.keyPem);
      assert.equal(await pubackCode(pending, renewTopic(pendingCn!), body), 0x87);
      assert.equal(await pubackCode(pending, 'devices/x'), 0x87);
      assert.deepEqual(await subackCodes(pending, [`$bastion/certs/${pendingCn!}/#`]), [0x87]);
      assert.deepEqual(await issuedCounts(b), issued, 'nothing issued');
    });
  });
});
