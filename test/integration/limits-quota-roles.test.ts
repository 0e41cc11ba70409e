/**
 * Quotas per role (issue 11, part 6) against a real broker: mutual TLS with certificates
 * from the test PKI, raw MQTT 5 publishers that write pre-encoded QoS 1 PUBLISH frames as
 * fast as TLS takes them and count the PUBACK reason codes. In one run a gateway (its own
 * exact `cert.cn` binding to role `gateway`: 20,000/s, burst 20,000; its OU `gateways` is
 * also bound to a slower role, which the exact binding beats) publishes 20,000 messages
 * with no 0x97, while a device (no quota role: limits.client, 1,000/s burst 2,000) gets
 * 0x97 past its quota. `bastion acl explain` (CLI) and `POST /api/v1/acl/explain` name the
 * quota and the role that gave it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import { loadConfigFile } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { adminRequest } from '../helpers/admin.js';
import { pump } from '../helpers/flood.js';
import { issueClient, makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, Inbox, run, withTimeout } from './support.js';

const GATEWAY_COUNT = 20_000;
const DEVICE_COUNT = 5_000;

let dir: string;
let configFile: string;
let pki: TestPki;
let gw1: TestClientFiles;
let dev1: TestClientFiles;
let operator: TestClientFiles;
let server: BastionServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-quota-roles-'));
  pki = await makeTestPki(join(dir, 'pki'), []);
  gw1 = await issueClient(pki, 'gw1', { organizationalUnit: 'gateways' });
  dev1 = await issueClient(pki, 'dev1');
  operator = await issueClient(pki, 'op-quota', { organizationalUnit: 'operators' });
  const serverTls = { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert };
  const allowPlant = [{ effect: 'allow', action: 'all', topic: 'plant/${cert.cn}/#' }];
  const config = {
    dataDir: join(dir, 'data'),
    listeners: [{ name: 'mtls', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: { ...serverTls, clientCerts: 'required' } }],
    persistence: { enabled: false },
    log: { level: 'silent' },
    authz: {
      roles: {
        device: { rules: allowPlant },
        'gateway-fleet': { rules: allowPlant, quota: { publishRate: { perSecond: 5000 } } },
        gateway: { rules: allowPlant, quota: { publishRate: { perSecond: 20000, burst: 20000 } } },
      },
      bindings: [
        { role: 'device', attribute: 'cert.cn', value: '*' },
        { role: 'gateway-fleet', attribute: 'cert.ou', value: 'gateways' },
        { role: 'gateway', attribute: 'cert.cn', value: 'gw1' },
      ],
    },
    // limits: the secure defaults (limits.client.publishRate 1000/s, burst 2000).
    admin: { port: 0, tls: serverTls },
  };
  // JSON is YAML: the broker and `bastion acl explain --config` read the same file.
  configFile = join(dir, 'bastion.yaml');
  writeFileSync(configFile, JSON.stringify(config));
  const { config: parsed, baseDir } = loadConfigFile(configFile);
  server = await startServer({ config: parsed, baseDir });
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface RawRun {
  codes: Map<number, number>;
  ms: number;
}

/**
 * Connects over mutual TLS as `files` (MQTT 5), writes `count` QoS 1 PUBLISH frames to
 * `topic` as fast as the socket takes them, and waits for every PUBACK.
 */
async function publishBurst(files: TestClientFiles, clientId: string, topic: string, count: number): Promise<RawRun> {
  const socket = tls.connect({ host: '127.0.0.1', port: server.listeners[0]!.port, servername: 'localhost', cert: readFileSync(files.cert), key: readFileSync(files.key), ca: readFileSync(pki.caCert) });
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const connack = new Inbox<number>();
  const codes = new Map<number, number>();
  let acked = 0;
  const allAcked = new Inbox<number>();
  parser.on('packet', (p: mqttPacket.Packet) => {
    if (p.cmd === 'connack') connack.push(p.reasonCode ?? 0);
    if (p.cmd === 'puback') {
      const code = p.reasonCode ?? 0;
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (++acked === count) allAcked.push(acked);
    }
  });
  socket.on('data', (d: Buffer) => parser.parse(d));
  socket.on('error', () => {});
  try {
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 60 }));
    const [code] = await connack.waitForCount(1, 5000, `CONNACK for ${clientId}`);
    assert.equal(code, 0, `${clientId} connected`);
    // Encoded before the clock starts: the run measures the broker, not the encoder.
    const frames = Buffer.concat(
      Array.from({ length: count }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('reading'), qos: 1, messageId: i + 1, retain: false, dup: false }, { protocolVersion: 5 })),
    );
    const started = performance.now();
    await pump(socket, frames, 1);
    await allAcked.waitForCount(1, 20_000, `${count} PUBACKs for ${clientId}`);
    return { codes, ms: performance.now() - started };
  } finally {
    socket.destroy();
  }
}

test('one run: the gateway publishes 20,000 QoS 1 messages at its role quota with no 0x97; a device is held to limits.client (0x97 past it)', async () => {
  const [gw, dev] = await withTimeout(
    Promise.all([publishBurst(gw1, 'gw1', 'plant/gw1/telemetry', GATEWAY_COUNT), publishBurst(dev1, 'dev1', 'plant/dev1/telemetry', DEVICE_COUNT)]),
    60_000,
    'both bursts',
  );
  const rate = Math.round(GATEWAY_COUNT / (gw.ms / 1000));
  // The figure for the report (Node version, messages per second the gateway got through).
  process.stdout.write(`# node ${process.version}: gateway ${GATEWAY_COUNT} QoS 1 in ${gw.ms.toFixed(0)} ms (${rate} msg/s); device ${DEVICE_COUNT} in ${dev.ms.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(dev.codes))}\n`);
  assert.equal(gw.codes.get(0x97) ?? 0, 0, `no Quota Exceeded for the gateway: ${JSON.stringify(Object.fromEntries(gw.codes))}`);
  // No subscriber: success is 0x10 No Matching Subscribers.
  assert.equal(gw.codes.get(0x10), GATEWAY_COUNT);
  const refused = dev.codes.get(0x97) ?? 0;
  const passed = dev.codes.get(0x10) ?? 0;
  assert.ok(refused > 0, `the device met its quota: ${JSON.stringify(Object.fromEntries(dev.codes))}`);
  assert.equal(refused + passed, DEVICE_COUNT);
  // Burst 2000 plus 1000/s refill while it ran (+1 for rounding): what limits.client allows.
  assert.ok(passed <= 2000 + Math.ceil(dev.ms) + 1, `${passed} passed in ${dev.ms.toFixed(0)} ms`);
});

test('acl explain (CLI on the config, and the admin API) names the quota and the role that gave it', async () => {
  const cli = await run('node', [BASTION_MAIN, 'acl', 'explain', '--config', configFile, '--client-id', 'gw1', '--cert', gw1.cert, '--publish', 'plant/gw1/t']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^ {2}roles: device, gateway-fleet, gateway$/m);
  assert.match(cli.stdout, /^ {2}quota: role "gateway" via binding cert\.cn=gw1 \(identity\): publishRate 20000 msg\/s \(burst 20000\), bandwidth limits\.client, maxSubscriptions limits\.client, maxQueued mqtt\.maxQueued$/m);
  const device = await run('node', [BASTION_MAIN, 'acl', 'explain', '--config', configFile, '--client-id', 'dev1', '--cert', dev1.cert, '--publish', 'plant/dev1/t']);
  assert.match(device.stdout, /^ {2}quota: limits\.client \(no role with a quota is bound\)$/m);

  const api = await adminRequest(pki, server.admin!.port, {
    client: operator,
    method: 'POST',
    path: '/api/v1/acl/explain',
    body: { clientId: 'gw2', certificate: { commonName: 'gw2', organizationalUnits: ['gateways'] }, publish: 'plant/gw2/t' },
  });
  assert.equal(api.status, 200, api.text);
  assert.deepEqual(api.json.quota, {
    role: 'gateway-fleet',
    binding: { role: 'gateway-fleet', attribute: 'cert.ou', value: 'gateways' },
    specificity: 'group',
    publishRate: { perSecond: 5000, burst: 10000 },
    bandwidth: null,
    maxSubscriptions: null,
    maxQueued: null,
  });
});
