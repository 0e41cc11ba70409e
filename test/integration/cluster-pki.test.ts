/**
 * The built-in PKI across the nodes of a cluster (issue 12, server/cluster-pki.ts): two
 * in-process nodes (a, b) over one real nats-server with JetStream, whose data directories
 * hold the same PKI (made once in a's with PkiService, root + intermediate, copied to b's
 * before b starts, as an operator copies `<dataDir>/pki`), each with an mqtts listener
 * that requires client certificates and trusts the PKI's chain (so it enforces the PKI's
 * own crl.pem). A client certificate issued on a (PkiService on a's directory, as the CLI
 * does) is in b's inventory within 2 s and `bastion cert revoke` on b's data directory
 * revokes it: refused on both, its live session on a cut. Two certificates revoked at the
 * same moment, one on each node, end up refused on both nodes and listed in both crl.pem
 * files. Entries written straight into the bucket: another CA's certificate is not
 * imported, a `valid` entry over a revoked certificate un-revokes nothing (the revoked
 * entry is written back), junk is refused.
 *
 * No sleeps: every wait is on an event (a log line, a file change, a KV watch, a
 * handshake) with a timeout.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { STATE_BUCKET } from '../../src/cluster/shared-state.js';
import { parseCrls } from '../../src/pki/index.js';
import { pkiKeyOf } from '../../src/server/cluster-pki-entry.js';
import { crlKeyOf } from '../../src/server/cluster-shared-state.js';
import { parseConfig } from '../../src/server/load-config.js';
import { PkiService } from '../../src/server/pki-service.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { PkiInventory, type InventoryRecord } from '../../src/store/sqlite/pki-inventory.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, killAllProcs, run, withTimeout } from './support.js';
import { RecordingLogger, tryMqttConnect, type ConnectOutcome } from './tls-support.js';

/** The bound for a change made on one node to be known (and in force) on the other. */
const WITHIN_MS = 2000;
const WAIT_MS = 5000;

interface Node {
  server: BastionServer;
  logger: RecordingLogger;
  dataDir: string;
  pkiDir: string;
  port: number;
}

interface Device {
  serial: string;
  name: string;
  tls: { ca: Buffer; cert: Buffer; key: Buffer; servername: string };
}

let dir: string;
let nats: SingleNats;
let a: Node;
let b: Node;
let nc: NatsConnection | null = null;
/** Revoked on b in the first test; used again by the bucket tests. */
let revokedOnB: Device;
const open: MqttClient[] = [];

async function startNode(nodeId: string): Promise<Node> {
  const dataDir = join(dir, nodeId);
  const pkiDir = join(dataDir, 'pki');
  const { config, baseDir } = parseConfig(
    {
      dataDir,
      listeners: [
        {
          name: 'devices',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 0,
          tls: { cert: join(dir, 'tls', 'localhost.crt'), key: join(dir, 'tls', 'localhost.key'), ca: join(pkiDir, 'ca-chain.crt'), clientCerts: 'required' },
        },
      ],
      persistence: { enabled: false },
      log: { level: 'silent' },
      authz: { policy: 'allow-all-INSECURE' },
      cluster: { nats: { servers: [nats.url] }, nodeId },
    },
    dir,
  );
  const logger = new RecordingLogger();
  const server = await startServer({ config, baseDir, logger });
  return { server, logger, dataDir, pkiDir, port: server.listeners[0]!.port };
}

/** Issues a client certificate on a node's PKI directory in a process-like way: its own PkiService, closed after. */
async function issueOn(node: Node, name: string): Promise<Device> {
  const pki = await PkiService.open(node.pkiDir);
  try {
    const issued = await pki.issue({ profile: 'client', commonName: name, outDir: join(dir, 'devices') });
    return {
      serial: issued.serialNumber,
      name,
      tls: { ca: readFileSync(join(node.pkiDir, 'ca-chain.crt')), cert: readFileSync(issued.certPath), key: readFileSync(issued.keyPath), servername: 'localhost' },
    };
  } finally {
    pki.close();
  }
}

function rowOn(node: Node, serial: string): InventoryRecord | undefined {
  const inv = PkiInventory.open(join(node.pkiDir, 'inventory.db'));
  try {
    return inv.get(serial);
  } finally {
    inv.close();
  }
}

const ISSUING = 'CN=Cluster PKI Issuing';

/** The issuing CA's CRL in a node's crl.pem. */
function issuingCrl(node: Node): ReturnType<typeof parseCrls>[number] {
  const crl = parseCrls(readFileSync(join(node.pkiDir, 'crl.pem'), 'utf8')).find((c) => c.issuer === ISSUING);
  assert.ok(crl !== undefined, `no CRL of ${ISSUING} in ${node.pkiDir}`);
  return crl;
}

/** The serials the issuing CA's CRL in a node's crl.pem lists. */
function crlSerials(node: Node): Set<string> {
  return new Set(issuingCrl(node).revoked.keys());
}

/** Waits until the cluster's CRL of the issuing CA (the bucket's `crl.<hash>`) satisfies `pred`; returns it. */
async function clusterCrlWhere(pred: (crl: ReturnType<typeof parseCrls>[number]) => boolean, what: string): Promise<ReturnType<typeof parseCrls>[number]> {
  const kv = await bucket();
  const watcher = await kv.watch({ key: crlKeyOf(ISSUING) });
  try {
    return await withTimeout(
      (async () => {
        for await (const e of watcher) {
          if (e.operation !== 'PUT') continue;
          const crl = parseCrls(e.string())[0]!;
          if (pred(crl)) return crl;
        }
        throw new Error('watch ended');
      })(),
      WAIT_MS,
      what,
    );
  } finally {
    watcher.stop();
  }
}

function refused(outcome: ConnectOutcome): boolean {
  return 'closed' in outcome || outcome.connack === 0x87;
}

/**
 * Connects until the node refuses the device (refused in the TLS handshake by its crl.pem,
 * or at CONNECT by the cluster's CRL, 0x87); between attempts it waits for the node to do
 * something (a log line: a CRL loaded or applied), never for a fixed time.
 */
async function refusedOn(node: Node, device: Device): Promise<ConnectOutcome> {
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    const seen = node.logger.lines.items.length;
    const outcome = await tryMqttConnect(node.port, { ...device.tls, clientId: `${device.name}-try`, protocolVersion: 5 });
    if (refused(outcome)) return outcome;
    const left = deadline - performance.now();
    if (left <= 0) assert.fail(`${device.name} still admitted by ${node.server.cluster!.nodeId}`);
    await node.logger.lines.waitForCount(seen + 1, left, `a change on ${node.server.cluster!.nodeId}`);
  }
}

/** Resolves once `pred` holds, checking it at each change in the nodes' PKI directories. */
async function untilFiles(pred: () => boolean, what: string): Promise<void> {
  const ticks = new Inbox<string>();
  const watchers: FSWatcher[] = [a.pkiDir, b.pkiDir].map((d) => watch(d, (_event, file) => ticks.push(String(file))));
  try {
    await ticks.waitFor(() => pred(), WAIT_MS, what);
  } finally {
    for (const w of watchers) w.close();
  }
}

async function bucket(): Promise<KV> {
  nc ??= await natsConnect({ servers: nats.url, name: 'test-writer' });
  return new Kvm(nc).open(STATE_BUCKET);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-pki-'));
  nats = await startNatsServer();
  // One PKI, made in a's data directory, copied to b's before b starts.
  const pki = await PkiService.init(join(dir, 'pki-a', 'pki'), { commonName: 'Cluster PKI Root' });
  try {
    await pki.createIntermediate({ commonName: 'Cluster PKI Issuing' });
    await pki.issue({ profile: 'server', commonName: 'localhost', sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }], outDir: join(dir, 'tls'), fileStem: 'localhost' });
  } finally {
    pki.close();
  }
  mkdirSync(join(dir, 'pki-b'));
  cpSync(join(dir, 'pki-a', 'pki'), join(dir, 'pki-b', 'pki'), { recursive: true });
  a = await startNode('pki-a');
  b = await startNode('pki-b');
});

after(async () => {
  for (const c of open) await endQuietly(c);
  await nc?.close();
  await a?.server.stop();
  await b?.server.stop();
  await nats?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

test('a client certificate issued on node a is in node b\'s inventory within 2 s; `bastion cert revoke` on b revokes it: refused on a and b, its session on a cut', async (t: TestContext) => {
  let started = performance.now();
  const device = await issueOn(a, 'dev-from-a');
  await b.logger.waitFor('certificate issued by another node of the cluster recorded', { serial: device.serial }, WAIT_MS);
  const knownMs = performance.now() - started;
  t.diagnostic(`issued on a → recorded in b's inventory after ${Math.round(knownMs)} ms`);
  assert.ok(knownMs < WITHIN_MS, `recorded on b after ${Math.round(knownMs)} ms`);
  // b's row is what the certificate says.
  const row = rowOn(b, device.serial)!;
  assert.equal(row.kind, 'client');
  assert.equal(row.commonName, 'dev-from-a');
  assert.equal(row.status, 'valid');
  assert.equal(row.fingerprint256, rowOn(a, device.serial)!.fingerprint256);

  // Trusted on both, as the same CA signed it.
  assert.deepEqual(await tryMqttConnect(b.port, { ...device.tls, clientId: 'dev-from-a-b', protocolVersion: 5 }), { connack: 0 });
  const live = await connectMqtt(`mqtts://127.0.0.1:${a.port}`, { ...device.tls, clientId: 'dev-from-a', protocolVersion: 5, reconnectPeriod: 0 });
  open.push(live);
  const closed = new Promise<void>((resolve) => live.once('close', () => resolve()));

  // Without the shared inventory b would answer ERR_PKI_UNKNOWN_SERIAL.
  started = performance.now();
  const cli = await run(process.execPath, [BASTION_MAIN, 'cert', 'revoke', device.serial, '--reason', 'keyCompromise', '--data-dir', b.dataDir], { timeoutMs: 20_000 });
  assert.equal(cli.code, 0, cli.stderr);
  await withTimeout(closed, WITHIN_MS, 'the session on node a cut');
  const cutMs = performance.now() - started;
  t.diagnostic(`revoked by the CLI on b → session on a cut after ${Math.round(cutMs)} ms (CLI run included)`);
  await a.logger.waitFor('certificate revoked by another node of the cluster', { serial: device.serial }, WAIT_MS);
  assert.equal(rowOn(a, device.serial)!.status, 'revoked');
  assert.equal(rowOn(a, device.serial)!.reason, 'keyCompromise');
  assert.ok(refused(await refusedOn(b, device)));
  assert.ok(refused(await refusedOn(a, device)));
  // a re-signed its own crl.pem with b's revocation.
  await untilFiles(() => crlSerials(a).has(device.serial), "a's crl.pem listing the revocation made on b");
  revokedOnB = device;
});

test('two certificates revoked at the same moment, one on each node: both refused on both nodes, both crl.pem files list both', async (t: TestContext) => {
  const x = await issueOn(a, 'dev-x');
  const y = await issueOn(b, 'dev-y');
  await b.logger.waitFor('certificate issued by another node of the cluster recorded', { serial: x.serial }, WAIT_MS);
  await a.logger.waitFor('certificate issued by another node of the cluster recorded', { serial: y.serial }, WAIT_MS);

  const started = performance.now();
  const [pa, pb] = await Promise.all([PkiService.open(a.pkiDir), PkiService.open(b.pkiDir)]);
  try {
    const [ra, rb] = await Promise.all([pa.revoke(x.serial, 'keyCompromise'), pb.revoke(y.serial, 'superseded')]);
    assert.equal(ra.result, 'revoked');
    assert.equal(rb.result, 'revoked');
  } finally {
    pa.close();
    pb.close();
  }
  const both = (n: Node): boolean => {
    const s = crlSerials(n);
    return s.has(x.serial) && s.has(y.serial);
  };
  await untilFiles(() => both(a) && both(b), 'both crl.pem files listing both revocations');
  const convergedMs = performance.now() - started;
  t.diagnostic(`concurrent revocations on a and b → both crl.pem files list both after ${Math.round(convergedMs)} ms`);
  assert.ok(convergedMs < WITHIN_MS, `converged after ${Math.round(convergedMs)} ms`);
  for (const node of [a, b]) {
    assert.equal(rowOn(node, x.serial)!.status, 'revoked');
    assert.equal(rowOn(node, y.serial)!.status, 'revoked');
    for (const device of [x, y]) assert.ok(refused(await refusedOn(node, device)));
  }
  // The cluster's CRL (what a third node would enforce) carries the union too.
  await clusterCrlWhere((crl) => crl.revoked.has(x.serial) && crl.revoked.has(y.serial), "the cluster's CRL listing both");
});

test("CRL numbers: a node whose counter fell behind signs its next CRL above the cluster's, so the cluster takes it", async () => {
  // a signed many CRLs meanwhile (as a busy node does): its counter is far ahead of b's.
  const inv = PkiInventory.open(join(a.pkiDir, 'inventory.db'));
  try {
    inv.raiseCounter('crl.number', issuingCrl(b).crlNumber! + 1000n);
  } finally {
    inv.close();
  }
  const p = await issueOn(a, 'dev-p');
  const q = await issueOn(a, 'dev-q');
  await b.logger.waitFor('certificate issued by another node of the cluster recorded', { serial: q.serial }, WAIT_MS);
  const pa = await PkiService.open(a.pkiDir);
  try {
    await pa.revoke(p.serial, 'superseded');
  } finally {
    pa.close();
  }
  const ahead = issuingCrl(a).crlNumber!;
  // b applied a's CRL (its number came with it); b now revokes q on its own.
  await b.logger.waitFor('CRL from the cluster applied', { crlNumber: ahead.toString() }, WAIT_MS);
  const pb = await PkiService.open(b.pkiDir);
  try {
    await pb.revoke(q.serial, 'superseded');
  } finally {
    pb.close();
  }
  const signed = issuingCrl(b);
  assert.ok(signed.crlNumber! > ahead, `b signed #${signed.crlNumber} after applying a's #${ahead}`);
  assert.ok(signed.revoked.has(q.serial));
  const taken = await clusterCrlWhere((crl) => crl.revoked.has(q.serial), "b's CRL in the cluster");
  assert.ok(taken.crlNumber! > ahead);
});

test("SECURITY: entries written straight into the bucket: another CA's certificate is not imported, `valid` over a revoked certificate un-revokes nothing, junk is refused", async () => {
  const kv = await bucket();

  // Another CA with the very same names: its certificate verifies under nothing of ours.
  const otherDir = join(dir, 'other-pki');
  const other = await PkiService.init(otherDir, { commonName: 'Cluster PKI Root' });
  let foreign: InventoryRecord;
  try {
    await other.createIntermediate({ commonName: 'Cluster PKI Issuing' });
    foreign = other.show((await other.issue({ profile: 'client', commonName: 'intruder', outDir: join(dir, 'devices') })).serialNumber);
  } finally {
    other.close();
  }
  const foreignKey = pkiKeyOf(foreign.serialNumber);
  await kv.put(foreignKey, JSON.stringify({ certPem: foreign.certPem, issuedAt: Date.now(), status: 'valid', revokedAt: null, reason: null }));
  await a.logger.waitFor("a PKI entry of the cluster is another CA's certificate; skipped", { key: foreignKey }, WAIT_MS);
  await b.logger.waitFor("a PKI entry of the cluster is another CA's certificate; skipped", { key: foreignKey }, WAIT_MS);
  assert.equal(rowOn(a, foreign.serialNumber), undefined);
  assert.equal(rowOn(b, foreign.serialNumber), undefined);

  // The certificate revoked on b, said `valid` by someone else.
  const key = pkiKeyOf(revokedOnB.serial);
  const mine = rowOn(a, revokedOnB.serial)!;
  const watcher = await kv.watch({ key });
  const restored = (async () => {
    let sawValid = false;
    for await (const e of watcher) {
      if (e.operation !== 'PUT') continue;
      const entry = JSON.parse(e.string()) as { status: string; revokedAt: number | null; reason: string | null };
      if (entry.status === 'valid') sawValid = true;
      else if (sawValid) return entry;
    }
    throw new Error('watch ended');
  })();
  await kv.put(key, JSON.stringify({ certPem: mine.certPem, issuedAt: mine.issuedAt.getTime(), status: 'valid', revokedAt: null, reason: null }));
  const warn = 'SECURITY: a PKI entry of the cluster says valid for a certificate revoked here; it stays revoked and the revocation is published again';
  await a.logger.waitFor(warn, { serial: revokedOnB.serial }, WAIT_MS);
  await b.logger.waitFor(warn, { serial: revokedOnB.serial }, WAIT_MS);
  const back = await withTimeout(restored, WAIT_MS, 'the revoked entry written back into the bucket');
  watcher.stop();
  assert.deepEqual(back, { certPem: mine.certPem, issuedAt: mine.issuedAt.getTime(), status: 'revoked', revokedAt: mine.revokedAt!.getTime(), reason: 'keyCompromise' });
  for (const node of [a, b]) {
    assert.equal(rowOn(node, revokedOnB.serial)!.status, 'revoked');
    assert.ok(refused(await refusedOn(node, revokedOnB)));
  }

  // Junk under the kind: refused with its reason, nothing recorded.
  await kv.put('pki.0ABC', '{"certPem":"x"}');
  await b.logger.waitFor('shared security state: an entry could not be applied; ignored', { key: 'pki.0ABC' }, WAIT_MS);
  assert.equal(rowOn(b, '0ABC'), undefined);
});
