/**
 * Revocation that does not depend on remembering `tls.crl`: a listener (and the admin API)
 * whose `tls.ca` is the built-in PKI's root enforces that PKI's CRLs by itself, so
 * `bastion cert revoke` cuts a live session within 2 s and refuses the reconnect. A
 * client-certificate listener with a foreign CA and nothing to revoke with is warned
 * about, `tls.revocation: none` is the written opt-out, and the admin API loads the
 * two-CRL `crl.pem` of the README's example like the MQTT listeners do (Node 24 reads only
 * the first CRL of one buffer) and logs every certificate it refuses.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { ConfigError } from '../../src/core/errors.js';
import { parseConfig } from '../../src/server/load-config.js';
import { ensureDevPki, type DevPkiPaths } from '../../src/server/dev-pki.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { adminRequest } from '../helpers/admin.js';
import type { TestPki } from '../helpers/pki.js';
import { BASTION_MAIN, connectMqtt, endQuietly, nextEvent, run } from './support.js';
import { RecordingLogger, startTlsBroker, tryMqttConnect } from './tls-support.js';
import { startTestBroker } from '../helpers/broker.js';
import { writeFileSync } from 'node:fs';

/** The dev PKI's files in the shape the admin helper takes (its CA is the dev root). */
function asTestPki(pki: DevPkiPaths): TestPki {
  return { dir: pki.dir, caCert: pki.rootCert, caKey: '', serverCert: pki.serverCert, serverKey: pki.serverKey, clients: {} };
}

async function issueDevice(dataDir: string, cn: string, ou?: string): Promise<{ cert: string; key: string }> {
  const r = await run(process.execPath, [BASTION_MAIN, 'cert', 'issue', '--profile', 'client', '--cn', cn, ...(ou !== undefined ? ['--ou', ou] : []), '--data-dir', dataDir], { timeoutMs: 20000 });
  assert.equal(r.code, 0, r.stderr);
  return { cert: join(dataDir, 'pki', 'issued', `${cn}.crt`), key: join(dataDir, 'pki', 'issued', `${cn}.key`) };
}

async function revoke(dataDir: string, cert: string): Promise<void> {
  const r = await run(process.execPath, [BASTION_MAIN, 'cert', 'revoke', '--cert', cert, '--data-dir', dataDir], { timeoutMs: 20000 });
  assert.equal(r.code, 0, r.stderr);
}

describe('a listener and the admin API that trust the built-in PKI, with no crl key', () => {
  let dir: string;
  let dataDir: string;
  let pki: DevPkiPaths;
  let server: BastionServer;
  let port: number;
  let adminPort: number;
  const logger = new RecordingLogger();
  const open: MqttClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bastion-revocation-defaults-'));
    dataDir = join(dir, 'data');
    pki = await ensureDevPki(dataDir);
    const { config, baseDir } = parseConfig(
      {
        dataDir,
        listeners: [{ name: 'mqtts', protocol: 'mqtts', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.rootCert } }],
        admin: { port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.rootCert, clientCerts: 'optional' } },
        persistence: { enabled: false },
        authz: { policy: 'allow-all-INSECURE' },
        sys: { intervalSeconds: 0 },
      },
      dir,
    );
    server = await startServer({ config, baseDir, logger });
    port = server.listeners[0]!.port;
    adminPort = server.admin!.port;
  });
  after(async () => {
    await Promise.all(open.map((c) => endQuietly(c)));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the start says the built-in PKI revokes for the listener and the admin API', async () => {
    await logger.waitFor('revocations enforced from the built-in PKI (tls.ca is its CA)', { listener: 'mqtts', crl: join(pki.dir, 'crl.pem') });
    await logger.waitFor('revocations enforced from the built-in PKI (tls.ca is its CA)', { listener: 'admin' });
  });

  test('bastion cert revoke cuts a live session within 2 s, and the reconnect is refused', async () => {
    const dev = await issueDevice(dataDir, 'dev1');
    const tlsFiles = { ca: pki.rootCert, cert: dev.cert, key: dev.key };
    const { readFileSync } = await import('node:fs');
    const options = { ca: readFileSync(tlsFiles.ca), cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key), servername: 'localhost', protocolVersion: 5 as const, reconnectPeriod: 0 };
    const client = await connectMqtt(`mqtts://127.0.0.1:${port}`, { ...options, clientId: 'dev1' });
    open.push(client);
    const cut = nextEvent(client, 'close', 2000);
    const started = Date.now();
    await revoke(dataDir, dev.cert);
    await cut;
    assert.ok(Date.now() - started < 2000 + 1000, 'cut within 2 s of the revocation (plus the CLI run)');
    assert.deepEqual(await tryMqttConnect(port, { ...options, clientId: 'dev1-again' }), { closed: 'closed before CONNACK' });
    await logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'certificate revoked' });
  });

  test('the admin API takes a valid operator certificate and refuses a revoked one, logging why', async () => {
    const alice = await issueDevice(dataDir, 'alice', 'operators');
    const files = { cert: alice.cert, key: alice.key };
    assert.equal((await adminRequest(asTestPki(pki), adminPort, { path: '/api/v1/clients', client: files })).status, 200);
    await revoke(dataDir, alice.cert);
    // The admin API reloads crl.pem when it changes: wait for the refusal (bounded), not for a fixed time.
    const deadline = Date.now() + 5000;
    let answer = await adminRequest(asTestPki(pki), adminPort, { path: '/api/v1/clients', client: files });
    while (answer.status === 200 && Date.now() < deadline) {
      await logger.lines.waitFor((ls) => ls.some((l) => l.msg === 'TLS material reloaded' && l.obj.listener === 'admin'), 5000, 'the admin CRL reload');
      answer = await adminRequest(asTestPki(pki), adminPort, { path: '/api/v1/clients', client: files });
    }
    assert.equal(answer.status, 401);
    assert.match(String(answer.json.error), /client certificate not trusted \(CERT_REVOKED\)/);
    await logger.waitFor('client certificate not trusted', { listener: 'admin', reason: 'certificate revoked' });
  });
});

describe('the README admin example: crl.pem (two CRLs) given as tls.crl', () => {
  test('a valid operator certificate is accepted (every CRL of the file is loaded)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-admin-crl-'));
    const dataDir = join(dir, 'data');
    try {
      const pki = await ensureDevPki(dataDir);
      const alice = await issueDevice(dataDir, 'alice', 'operators');
      const { config, baseDir } = parseConfig(
        {
          dataDir,
          listeners: [{ name: 'mqtts', protocol: 'mqtts', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.rootCert, crl: pki.crl } }],
          admin: { port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caChain, crl: pki.crl, clientCerts: 'optional' } },
          persistence: { enabled: false },
          sys: { intervalSeconds: 0 },
        },
        dir,
      );
      const server = await startServer({ config, baseDir });
      try {
        const r = await adminRequest(asTestPki(pki), server.admin!.port, { path: '/api/v1/clients', client: alice });
        assert.equal(r.status, 200, r.text);
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('listeners with nothing to revoke with', () => {
  test('a foreign CA without tls.crl is warned about, naming the listener', async () => {
    const b = await startTlsBroker();
    try {
      const line = await b.logger.waitFor(/^client certificates are accepted but nothing can revoke them/, { listener: 'mqtts' });
      assert.equal(line.level, 'warn');
    } finally {
      await b.stop();
    }
  });

  test('tls.revocation: none is the written opt-out (said at start), and contradicts a crl', async () => {
    const b = await startTlsBroker({ tls: { revocation: 'none' } });
    try {
      await b.logger.waitFor('tls.revocation: none: revoked client certificates are accepted', { listener: 'mqtts' });
      assert.equal(b.logger.lines.items.filter((l) => /nothing can revoke them/.test(l.msg)).length, 0);
    } finally {
      await b.stop();
    }
    assert.throws(
      () => parseConfig({ listeners: [{ name: 'l', protocol: 'mqtts', port: 0, tls: { cert: 'c', key: 'k', ca: 'a', crl: 'r', revocation: 'none' } }] }, '/tmp'),
      (err: unknown) => err instanceof ConfigError && /listeners\[0\]\.tls\.revocation: revocation: none contradicts crl/.test(err.message),
    );
  });
});

describe('acl lint names a listener that nothing can revoke for', () => {
  const NO_REVOCATION = /^warning: listener mqtts accepts client certificates but nothing can revoke them: set tls\.crl \(or trust the built-in PKI\), or write tls\.revocation: none$/m;

  test('bastion acl lint -c: a foreign CA without crl is a warning (exit 0); the built-in PKI or revocation: none is not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-lint-revocation-'));
    try {
      const pki = await ensureDevPki(join(dir, 'bastion-data'));
      const foreign = await startTlsBroker({ dir: join(dir, 'foreign') });
      const foreignCa = foreign.pki.caCert;
      await foreign.stop();
      const lint = async (name: string, tls: Record<string, unknown>): Promise<{ code: number | null; stdout: string; stderr: string }> => {
        const file = join(dir, `${name}.yaml`);
        const config = { listeners: [{ name: 'mqtts', protocol: 'mqtts', port: 8883, tls: { cert: pki.serverCert, key: pki.serverKey, ...tls } }] };
        writeFileSync(file, JSON.stringify(config));
        return run(process.execPath, [BASTION_MAIN, 'acl', 'lint', '-c', file], { cwd: dir, timeoutMs: 20000 });
      };
      const bare = await lint('foreign', { ca: foreignCa });
      assert.equal(bare.code, 0, bare.stderr);
      assert.match(bare.stdout, NO_REVOCATION);
      for (const [name, tls] of [
        ['builtin', { ca: pki.rootCert }],
        ['optout', { ca: foreignCa, revocation: 'none' }],
        ['withcrl', { ca: foreignCa, crl: pki.crl }],
      ] as const) {
        const r = await lint(name, tls);
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(r.stdout, /nothing can revoke/, name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('GET /api/v1/acl/lint of a running broker reports its listener too', async () => {
    const b = await startTestBroker({ admin: {}, sys: { intervalSeconds: 0 } });
    try {
      const created = await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'lint', '--data-dir', b.dataDir]);
      assert.equal(created.code, 0, created.stderr);
      const r = await adminRequest(b.pki, b.server.admin!.port, { path: '/api/v1/acl/lint', token: created.stdout.trim() });
      assert.equal(r.status, 200, r.text);
      const findings = (r.json as { findings: Array<{ severity: string; message: string }> }).findings;
      assert.ok(findings.some((f) => f.severity === 'warning' && /^listener mqtts accepts client certificates but nothing can revoke them/.test(f.message)), JSON.stringify(findings));
    } finally {
      await b.stop();
    }
  });
});
