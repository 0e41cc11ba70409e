/**
 * The `cluster` config rules (issue 12): a NATS server off this machine needs credentials
 * and TLS, secrets only from files, node ids that are one NATS subject token, the
 * defaults; and the feature detection from a server's version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/server/load-config.js';
import { DEFAULT_RETENTION, defaultNodeId, isLoopbackHost, resolveNodeId } from '../../src/core/cluster-config.js';
import { detectFeatures } from '../../src/cluster/nats-connection.js';
import { configError } from '../helpers/config-error.js';

const listeners = [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }];
const creds = { user: 'bastion', passwordFile: 'nats.pass' };

function withCluster(cluster: unknown): Record<string, unknown> {
  return { listeners, cluster };
}

test('no cluster section: the config is as before (no cluster key at all)', () => {
  const { config } = parseConfig({ listeners }, '/tmp');
  assert.equal(config.cluster, undefined);
  assert.equal('cluster' in config, false);
});

test('a loopback NATS server needs neither credentials nor TLS; defaults: 1 replica, 7 days / 1 GiB retention, 5 s connect timeout', () => {
  for (const url of ['nats://127.0.0.1:4222', 'nats://127.9.8.7', 'nats://localhost:4222', 'nats://[::1]:4222']) {
    const { config } = parseConfig(withCluster({ nats: { servers: [url] } }), '/tmp');
    assert.deepEqual(config.cluster, { nats: { servers: [url], connectTimeoutSeconds: 5 }, storeTimeoutSeconds: 15, replicas: 1, retention: { maxAgeSeconds: 604800, maxBytes: 1073741824 } }, url);
  }
  assert.deepEqual(DEFAULT_RETENTION, { maxAgeSeconds: 7 * 24 * 3600, maxBytes: 1024 ** 3 });
});

test('SECURITY: a NATS server off loopback without credentials or without TLS is a config error naming the key and what is missing', () => {
  const url = 'nats://10.0.0.5:4222';
  assert.equal(
    configError(withCluster({ nats: { servers: ['nats://127.0.0.1:4222', url] } })),
    `config error at cluster.nats.servers[1]: ${url} is not loopback, so it needs cluster.nats.credentials and cluster.nats.tls (nats-server has no authentication by default and listens on every interface)`,
  );
  assert.match(configError(withCluster({ nats: { servers: [url], credentials: creds } })), /^config error at cluster\.nats\.servers\[0\]: .* needs cluster\.nats\.tls \(/);
  assert.match(configError(withCluster({ nats: { servers: [url], tls: {} } })), /^config error at cluster\.nats\.servers\[0\]: .* needs cluster\.nats\.credentials \(/);
  // Host names that merely start like loopback are not loopback.
  for (const host of ['nats.example.com', '127.0.0.1.example.com', '128.0.0.1', '0.0.0.0', '[::]', 'localhost.evil']) {
    assert.match(configError(withCluster({ nats: { servers: [`nats://${host}:4222`] } })), /is not loopback/, host);
  }
  const ok = parseConfig(withCluster({ nats: { servers: [url, 'tls://nats-2.internal:4222'], credentials: creds, tls: { ca: 'ca.pem' } }, replicas: 3 }), '/tmp');
  assert.equal(ok.config.cluster?.replicas, 3);
});

test('SECURITY: secrets come from files only: inline password/token and user:password@ URLs are refused with the key to use', () => {
  assert.equal(
    configError(withCluster({ nats: { servers: ['nats://127.0.0.1:4222'], credentials: { user: 'u', password: 'hunter2' } } })),
    'config error at cluster.nats.credentials.password: inline passwords are not accepted: put the password in a file (mode 0600) and name it in passwordFile',
  );
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1:4222'], credentials: { token: 's3cret' } } })), /^config error at cluster\.nats\.credentials\.token: inline tokens are not accepted: .* tokenFile$/);
  assert.match(configError(withCluster({ nats: { servers: ['nats://u:p@127.0.0.1:4222'] } })), /^config error at cluster\.nats\.servers\[0\]: .*credentials do not go in the URL; use cluster\.nats\.credentials$/);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'], credentials: { user: 'u' } } })), /^config error at cluster\.nats\.credentials.*: user and passwordFile go together$/);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'], credentials: { tokenFile: 't', credsFile: 'c' } } })), /^config error at cluster\.nats\.credentials: exactly one of user with passwordFile, tokenFile, credsFile or nkeySeedFile is needed$/);
  for (const c of [creds, { tokenFile: 't' }, { credsFile: 'x.creds' }, { nkeySeedFile: 'seed' }]) {
    parseConfig(withCluster({ nats: { servers: ['nats://127.0.0.1'], credentials: c } }), '/tmp');
  }
});

test('server URLs: nats:// or tls:// host:port only; tls:// needs the tls section; cert and key go together', () => {
  assert.match(configError(withCluster({ nats: { servers: ['http://127.0.0.1:4222'] } })), /servers\[0\]: http:\/\/127\.0\.0\.1:4222: the scheme must be nats:\/\/ or tls:\/\/$/);
  assert.match(configError(withCluster({ nats: { servers: ['127.0.0.1:4222'] } })), /servers\[0\]: 127\.0\.0\.1:4222 is not a URL \(write nats:\/\/host:port\)$/);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1:4222/x'] } })), /servers\[0\]: .*no path or query/);
  assert.match(configError(withCluster({ nats: { servers: ['tls://127.0.0.1:4222'] } })), /^config error at cluster\.nats\.tls: tls:\/\/127\.0\.0\.1:4222 asks for TLS/);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'], tls: { cert: 'c.pem' } } })), /^config error at cluster\.nats\.tls\.key: cert and key go together$/);
  assert.match(configError(withCluster({ nats: { servers: [] } })), /^config error at cluster\.nats\.servers: /);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'] }, replicas: 2 })), /^config error at cluster\.replicas: /);
  assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'] }, retention: { maxAgeSeconds: 1 } })), /^config error at cluster\.retention\.maxAgeSeconds: /);
});

test('nodeId: one NATS subject token (letters, digits, _ and -, at most 64); default <host>-<pid>, made safe', () => {
  for (const bad of ['a.b', 'a*', 'a>', 'a b', '', '$SYS', 'x'.repeat(65), 'nöde']) {
    assert.match(configError(withCluster({ nats: { servers: ['nats://127.0.0.1'] }, nodeId: bad })), /^config error at cluster\.nodeId: must be 1 to 64 letters, digits, _ or - \(one NATS subject token\)$/, JSON.stringify(bad));
  }
  const { config } = parseConfig(withCluster({ nats: { servers: ['nats://127.0.0.1'] }, nodeId: 'edge-7_a' }), '/tmp');
  assert.equal(resolveNodeId(config.cluster!, 'ignored', 1), 'edge-7_a');
  assert.equal(defaultNodeId('broker-3.eu.example.com', 4242), 'broker-3-4242');
  assert.equal(defaultNodeId('web host*', 1), 'web-host--1');
  assert.equal(defaultNodeId('', 9), 'node-9');
  const long = defaultNodeId('h'.repeat(200), 4194304);
  assert.ok(long.length <= 64 && /^[A-Za-z0-9_-]+$/.test(long), long);
});

test('isLoopbackHost: 127.0.0.0/8, ::1 and localhost only', () => {
  for (const h of ['127.0.0.1', '127.255.255.254', '::1', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['127.0.0.256', '10.0.0.1', '::', '::ffff:10.0.0.1', 'example.com', '127.0.0']) assert.equal(isLoopbackHost(h), false, h);
});

test('detectFeatures: 2.9.x has neither multi-filter consumers nor multi-key KV watch; 2.10+ (and its pre-releases) has both', () => {
  const f29 = detectFeatures({ version: '2.9.10', jetstream: true, max_payload: 1048576 });
  assert.deepEqual(f29, { version: '2.9.10', major: 2, minor: 9, patch: 10, jetstream: true, multiFilterConsumers: false, kvMultiKeyWatch: false, maxPayload: 1048576 });
  for (const v of ['2.10.0', '2.11.0-RC.1', '2.15.0-dev', '3.0.0']) {
    const f = detectFeatures({ version: v, jetstream: true, max_payload: 8 });
    assert.equal(f.multiFilterConsumers && f.kvMultiKeyWatch, true, v);
  }
  assert.equal(detectFeatures({ version: 'garbage', max_payload: 0 }).jetstream, false);
});
