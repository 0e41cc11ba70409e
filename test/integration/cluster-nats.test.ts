/**
 * The NATS connection of cluster mode (issue 12) against a real single-node nats-server
 * 2.9.10 with user/password authorization on loopback: credentials from files, the
 * connection named after the node id, features detected, one-line failures (wrong
 * password, no credentials, nobody listening) within a bounded time; and `bastion serve`
 * refusing `--workers` without a cluster section, and a cluster section open to the
 * network, in one line (real CLI; cluster-workers.test.ts runs `--workers` with one).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { parseConfig } from '../../src/server/load-config.js';
import { connectNats, type ClusterNatsConnection } from '../../src/cluster/nats-connection.js';
import { BastionError } from '../../src/core/errors.js';
import type { ClusterConfig } from '../../src/core/cluster-config.js';
import { startNatsServer, freePorts, type SingleNats } from '../helpers/nats-server.js';
import { makeTestPki } from '../helpers/pki.js';
import { BASTION_MAIN, killAllProcs, run } from './support.js';

const auth = { user: 'bastion', password: 'correct horse battery' };
let nats: SingleNats;
let dir: string;
const open: ClusterNatsConnection[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-nats-'));
  writeFileSync(join(dir, 'nats.pass'), `${auth.password}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'wrong.pass'), 'not the password\n', { mode: 0o600 });
  nats = await startNatsServer({ auth, monitor: true });
});

after(async () => {
  await Promise.all(open.map((c) => c.close().catch(() => undefined)));
  await nats?.stop();
  await killAllProcs();
  rmSync(dir, { recursive: true, force: true });
});

/** The cluster section as the config loader makes it (relative files beside `dir`). */
function clusterConfig(cluster: Record<string, unknown>): ClusterConfig {
  const listeners = [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }];
  return parseConfig({ listeners, cluster }, dir).config.cluster!;
}

async function connectError(cluster: ClusterConfig): Promise<BastionError> {
  try {
    const c = await connectNats({ cluster, nodeId: 'n-test', baseDir: dir });
    open.push(c);
  } catch (err) {
    assert.ok(err instanceof BastionError, String(err));
    return err;
  }
  return assert.fail('expected the connection to be refused');
}

test('user/password from a file: connects, named bastion:<nodeId> on the server, nats-server 2.9.10 detected (no multi-filter consumers, no multi-key watch)', async () => {
  const cluster = clusterConfig({ nats: { servers: [nats.url], credentials: { user: auth.user, passwordFile: 'nats.pass' } }, nodeId: 'edge-1' });
  const conn = await connectNats({ cluster, nodeId: cluster.nodeId!, baseDir: dir });
  open.push(conn);
  assert.equal(conn.name, 'bastion:edge-1');
  assert.equal(conn.server(), `127.0.0.1:${nats.node.port}`);
  assert.deepEqual(conn.features, { version: '2.9.10', major: 2, minor: 9, patch: 10, jetstream: true, multiFilterConsumers: false, kvMultiKeyWatch: false, maxPayload: 1048576 });
  // The server knows the connection by its name (monitoring endpoint on loopback).
  const connz = (await (await fetch(`http://127.0.0.1:${nats.node.monitorPort}/connz`)).json()) as { connections: Array<{ name?: string }> };
  assert.ok(connz.connections.some((c) => c.name === 'bastion:edge-1'), JSON.stringify(connz.connections));
  // close() is idempotent and ends with a close event.
  const events: string[] = [];
  conn.onStatus((e) => events.push(e.type));
  await conn.close();
  await conn.close();
  assert.deepEqual(events, ['close']);
});

test('SECURITY: a wrong password is refused in one line naming the server and the credentials key', async () => {
  const started = Date.now();
  const err = await connectError(clusterConfig({ nats: { servers: [nats.url], credentials: { user: auth.user, passwordFile: 'wrong.pass' } } }));
  assert.equal(err.code, 'ERR_CLUSTER_CONNECT');
  assert.equal(err.message, `cannot connect to NATS at ${nats.url}: authentication refused (Authorization Violation): check cluster.nats.credentials`);
  assert.ok(Date.now() - started < 5000);
});

test('SECURITY: no credentials at all: refused the same way (the server requires them)', async () => {
  const err = await connectError(clusterConfig({ nats: { servers: [nats.url] } }));
  assert.match(err.message, /^cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: authentication refused \(Authorization Violation\)/);
  assert.doesNotMatch(err.message, /\n/);
});

test('fail closed: nobody listening, and a missing secret file, are one line each, within the connect timeout', async () => {
  const [port] = await freePorts(1);
  const url = `nats://127.0.0.1:${port}`;
  const started = Date.now();
  const err = await connectError(clusterConfig({ nats: { servers: [url], connectTimeoutSeconds: 2 } }));
  assert.equal(err.message, `cannot connect to NATS at ${url}: connection refused (connect ECONNREFUSED 127.0.0.1:${port})`);
  assert.ok(Date.now() - started < 2500, `${Date.now() - started} ms`);
  const missing = await connectError(clusterConfig({ nats: { servers: [nats.url], credentials: { user: 'u', passwordFile: 'nope.pass' } } }));
  assert.equal(missing.code, 'ERR_CLUSTER_FILE');
  assert.equal(missing.message, `cannot read cluster.nats.credentials.passwordFile ${join(dir, 'nope.pass')}: ENOENT`);
});

test('fail closed: a server that accepts TCP but never speaks NATS fails the connect after connectTimeoutSeconds, in one line', async () => {
  const accepted: net.Socket[] = [];
  const silent = net.createServer((socket) => accepted.push(socket));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const url = `nats://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  try {
    const started = Date.now();
    const err = await connectError(clusterConfig({ nats: { servers: [url], connectTimeoutSeconds: 0.5 } }));
    const ms = Date.now() - started;
    assert.equal(err.message, `cannot connect to NATS at ${url}: no NATS handshake within 0.5 s (cluster.nats.connectTimeoutSeconds)`);
    assert.ok(ms >= 450 && ms < 1500, `${ms} ms`);
  } finally {
    // @nats-io/transport-node 3.4.0 keeps the socket of a handshake that timed out (its
    // close() ignores a transport that never got INFO); closing our end releases it.
    for (const socket of accepted) socket.destroy();
    silent.close();
  }
});

test('TLS: a server requiring mutual TLS takes the config\'s ca/cert/key (relative to the config directory); without cluster.nats.tls it refuses in one line', async () => {
  const pki = await makeTestPki(join(dir, 'pki'), ['edge']);
  const tlsNats = await startNatsServer({ auth, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, verifyClients: pki.clients.edge! } });
  try {
    const credentials = { user: auth.user, passwordFile: 'nats.pass' };
    const cluster = clusterConfig({ nats: { servers: [tlsNats.url], credentials, tls: { ca: 'pki/ca.crt', cert: 'pki/edge.crt', key: 'pki/edge.key' } } });
    const conn = await connectNats({ cluster, nodeId: 'tls-1', baseDir: dir });
    open.push(conn);
    assert.equal(conn.features.version, '2.9.10');
    await conn.close();
    const noTls = await connectError(clusterConfig({ nats: { servers: [tlsNats.url], credentials } }));
    assert.match(noTls.message, new RegExp(`^cannot connect to NATS at ${tlsNats.url}: [^\\n]+$`));
    // Without a client certificate the server's verify refuses the handshake (the client
    // sees it as no handshake: TLS 1.3 reports the refusal after the client's Finished).
    const noCert = await connectError(clusterConfig({ nats: { servers: [tlsNats.url], credentials, tls: { ca: 'pki/ca.crt' }, connectTimeoutSeconds: 1 } }));
    assert.match(noCert.message, new RegExp(`^cannot connect to NATS at ${tlsNats.url}: [^\\n]+$`));
  } finally {
    await tlsNats.stop();
  }
});

/** Runs the real CLI and returns its stderr lines and exit code. */
async function serve(args: string[]): Promise<{ code: number | null; lines: string[] }> {
  const r = await run(process.execPath, [BASTION_MAIN, 'serve', ...args], { cwd: dir, timeoutMs: 15000 });
  return { code: r.code, lines: r.stderr.split('\n').filter((l) => l !== '') };
}

test('bastion serve --workers: refused in one line (exit 1) without a cluster section; a cluster section toward a NATS off this machine without credentials and TLS is refused too', async () => {
  const listener = 'listeners:\n  - { name: plain, protocol: mqtt, host: 127.0.0.1, port: 0, insecure: true, allowAnonymous: true }\n';
  writeFileSync(join(dir, 'single.yaml'), listener);
  writeFileSync(join(dir, 'open.yaml'), `${listener}cluster:\n  nats: { servers: [nats://192.0.2.10:4222] }\n`);
  const results = await Promise.all([
    serve(['-c', 'single.yaml', '--workers', '2']),
    serve(['--workers', 'auto', '--data-dir', 'zero']),
    serve(['-c', 'single.yaml', '--workers', '0']),
    serve(['-c', 'open.yaml']),
  ]);
  assert.deepEqual(results, [
    { code: 1, lines: ['bastion: --workers needs a cluster section (NATS) in the config: cluster.nats.servers, plus credentials and TLS for a NATS server off this machine; single.yaml has none'] },
    { code: 1, lines: ['bastion: --workers needs a cluster section (NATS) in the config: cluster.nats.servers, plus credentials and TLS for a NATS server off this machine; no config was given (-c)'] },
    { code: 1, lines: ['bastion: invalid --workers 0 (a whole number from 1 to 256, or auto)'] },
    { code: 1, lines: ['bastion: config error at cluster.nats.servers[0]: nats://192.0.2.10:4222 is not loopback, so it needs cluster.nats.credentials and cluster.nats.tls (nats-server has no authentication by default and listens on every interface)'] },
  ]);
  // The zero-config refusal came before a development PKI was made.
  assert.equal(existsSync(join(dir, 'zero')), false);
});
