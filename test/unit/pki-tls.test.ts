/**
 * Tests that use what src/pki issues: a real node:tls server enforcing mutual TLS with
 * test-PKI certificates, src/server/dev-pki.ts (ensureDevPki) and test/helpers/pki.ts
 * (makeTestPki, issueClient), checked with OpenSSL. Issuance itself is in pki.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { chmod, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { BastionError } from '../../src/core/errors.js';
import { createRootCa, issueCertificate } from '../../src/pki/index.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { issueClient, makeTestPki, testCa, type TestPki } from '../helpers/pki.js';
import { mode, openssl, tempDirs, x509Text } from './pki-test-support.js';

const TIMEOUT_MS = 5_000;
const newDir = tempDirs('bastion-pki-tls-test-');

/** Resolves with the event's arguments, or rejects after `ms`. Does not treat 'error' specially. */
function waitFor(emitter: EventEmitter, event: string, ms = TIMEOUT_MS): Promise<unknown[]> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    function onEvent(...args: unknown[]): void {
      clearTimeout(timer);
      resolvePromise(args);
    }
    emitter.once(event, onEvent);
  });
}

describe('mutual TLS with node:tls', () => {
  let pki: TestPki;
  let server: tls.Server;
  let port: number;
  const accepted: tls.TLSSocket[] = [];

  before(async () => {
    pki = await makeTestPki(await newDir('tls'), ['client1']);
    const [key, cert, ca] = await Promise.all([readFile(pki.serverKey), readFile(pki.serverCert), readFile(pki.caCert)]);
    server = tls.createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, (socket) => {
      accepted.push(socket);
      socket.end(`hello ${String((socket.getPeerCertificate() as tls.PeerCertificate).subject.CN)}`);
    });
    server.listen(0, '127.0.0.1');
    await waitFor(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((resolveClose) => server.close(() => resolveClose()));
  });

  /** Connects, waits for the socket to close, and reports what each side saw. */
  async function connect(
    maxVersion: tls.SecureVersion,
    credentials: { cert: string; key: string } | undefined,
    expectRejection: boolean,
  ): Promise<{ data: string; error?: Error; serverError?: Error; authorizationError?: string }> {
    const ca = await readFile(pki.caCert);
    const options: tls.ConnectionOptions = { host: '127.0.0.1', port, servername: 'localhost', ca, maxVersion };
    if (credentials !== undefined) {
      options.cert = await readFile(credentials.cert);
      options.key = await readFile(credentials.key);
    }
    const serverError = expectRejection ? waitFor(server, 'tlsClientError') : undefined;
    const socket = tls.connect(options);
    let data = '';
    let error: Error | undefined;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', (err) => (error = err));
    await waitFor(socket, 'close');
    const result: { data: string; error?: Error; serverError?: Error; authorizationError?: string } = { data };
    if (error !== undefined) result.error = error;
    if (serverError !== undefined) {
      const [err, serverSocket] = (await serverError) as [Error, tls.TLSSocket];
      result.serverError = err;
      // Node verifies the chain itself after the handshake and records why it failed here.
      const reason = (serverSocket as tls.TLSSocket & { authorizationError?: Error | string }).authorizationError;
      if (reason !== undefined) result.authorizationError = String(reason);
    }
    return result;
  }

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: accepts a client presenting a certificate from the CA`, async () => {
      const before = accepted.length;
      const r = await connect(version, pki.clients['client1'], false);
      assert.equal(r.error, undefined);
      assert.equal(r.data, 'hello client1');
      assert.equal(accepted.length, before + 1);
      assert.equal(accepted.at(-1)?.authorized, true);
    });

    it(`${version}: rejects a client without a certificate`, async () => {
      const before = accepted.length;
      const r = await connect(version, undefined, true);
      assert.equal(r.data, '');
      assert.ok(r.serverError, 'the server reports a TLS client error');
      assert.match(String((r.serverError as NodeJS.ErrnoException).code), /CERTIFICATE/);
      assert.equal(accepted.length, before, 'no connection reached the application');
    });
  }

  /** Presents `issued` as the client certificate over TLS 1.3; asserts the server refused it before the application saw it. */
  async function presentRefused(stem: string, issued: { certPem: string; keyPem: string }): Promise<Awaited<ReturnType<typeof connect>>> {
    const dir = await newDir(stem);
    const files = { cert: join(dir, `${stem}.crt`), key: join(dir, `${stem}.key`) };
    await writeFile(files.cert, issued.certPem);
    await writeFile(files.key, issued.keyPem, { mode: 0o600 });
    const before = accepted.length;
    const r = await connect('TLSv1.3', files, true);
    assert.equal(r.data, '');
    assert.ok(r.serverError, 'the server reports a TLS client error');
    assert.equal(accepted.length, before, 'no connection reached the application');
    return r;
  }

  it('rejects a client certificate from another CA', async () => {
    const rogueCa = await createRootCa({ commonName: 'Bastion Test CA' }); // same name, different key
    const r = await presentRefused('rogue', await issueCertificate({ ca: rogueCa, profile: 'client', commonName: 'client1' }));
    assert.equal(r.authorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('rejects a server-profile certificate presented as a client certificate', async () => {
    const r = await presentRefused('wrong-profile', await issueCertificate({ ca: await testCa(), profile: 'server', commonName: 'client1' }));
    assert.equal(r.authorizationError, 'INVALID_PURPOSE');
  });
});

describe('ensureDevPki', () => {
  let dataDir: string;
  before(async () => {
    dataDir = join(await newDir('dev'), 'data'); // does not exist yet
  });

  it('creates root, intermediate, server and demo device certificates with private file modes', async () => {
    const p = await ensureDevPki(dataDir);
    assert.equal(p.created, true);
    assert.equal(p.dir, join(dataDir, 'pki'));
    assert.deepEqual(
      [p.rootCert, p.caChain, p.crl, p.serverCert, p.serverKey, p.clientCert, p.clientKey],
      ['root.crt', 'ca-chain.crt', 'crl.pem', 'server.crt', 'server.key', 'device-demo.crt', 'device-demo.key'].map((f) => join(p.dir, f)),
    );
    assert.equal(mode(await stat(p.dir)), 0o700);
    for (const key of ['root.key', 'intermediate.key', 'server.key', 'device-demo.key'].map((f) => join(p.dir, f))) {
      assert.equal(mode(await stat(key)), 0o600, key);
      assert.match(await readFile(key, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    }
    for (const cert of [p.rootCert, p.serverCert, p.clientCert, p.crl]) assert.equal(mode(await stat(cert)), 0o644, cert);

    const intermediate = join(p.dir, 'intermediate.crt');
    const s = await openssl('verify', '-CAfile', p.rootCert, '-untrusted', intermediate, '-purpose', 'sslserver', p.serverCert);
    assert.ok(s.ok, s.out);
    const c = await openssl('verify', '-CAfile', p.rootCert, '-untrusted', intermediate, '-crl_check_all', '-CRLfile', p.crl, '-purpose', 'sslclient', p.clientCert);
    assert.ok(c.ok, c.out);
    assert.match(await x509Text(p.rootCert), /Subject: CN = Bastion Development Root CA/);
    const serverText = await x509Text(p.serverCert);
    assert.match(serverText, /Subject: CN = localhost/);
    assert.match(serverText, /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    const clientText = await x509Text(p.clientCert);
    assert.match(clientText, /Subject: CN = device-demo/);
    assert.match(clientText, /TLS Web Client Authentication/);
    // The certificate files carry the chain up to, not including, the root.
    assert.equal((await readFile(p.clientCert, 'utf8')).match(/BEGIN CERTIFICATE/g)?.length, 2);
  });

  it('reuses the existing files on the next call (same CA)', async () => {
    const first = await readFile(join(dataDir, 'pki', 'root.crt'), 'utf8');
    const p = await ensureDevPki(dataDir);
    assert.equal(p.created, false);
    assert.equal(new X509Certificate(await readFile(p.rootCert)).fingerprint256, new X509Certificate(first).fingerprint256);
    assert.equal(await readFile(p.rootCert, 'utf8'), first);
  });

  it('refuses half a certificate pair, and leaves the CA alone', async () => {
    const p = await ensureDevPki(dataDir);
    const caBefore = await readFile(p.rootCert, 'utf8');
    await unlink(p.serverKey);
    await assert.rejects(ensureDevPki(dataDir), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, 'ERR_DEV_PKI');
      assert.match(err.message, /incomplete/);
      assert.match(err.message, /server\.key/);
      return true;
    });
    assert.equal(await readFile(p.rootCert, 'utf8'), caBefore);
  });

  it('refuses a PKI directory without its root certificate', async () => {
    const dir = join(await newDir('dev-noroot'), 'data');
    const p = await ensureDevPki(dir);
    await unlink(p.rootCert);
    await assert.rejects(ensureDevPki(dir), /incomplete: found .*intermediate\.crt.* but no root certificate/);
  });

  it('refuses private keys that others can read', async () => {
    const dir = join(await newDir('dev-perm'), 'data');
    const p = await ensureDevPki(dir);
    await chmod(join(p.dir, 'intermediate.key'), 0o644);
    await assert.rejects(ensureDevPki(dir), /chmod 600/);
  });

  it('two concurrent first calls agree on one CA', async () => {
    const dir = join(await newDir('dev-race'), 'data');
    const [a, b] = await Promise.all([ensureDevPki(dir), ensureDevPki(dir)]);
    assert.deepEqual([a.created, b.created].sort(), [false, true]);
    assert.equal(await readFile(a.rootCert, 'utf8'), await readFile(b.rootCert, 'utf8'));
  });
});

describe('test helper makeTestPki', () => {
  it('writes the PKI files, keys mode 0600, and caches the CA and server certificate', async () => {
    const a = await makeTestPki(await newDir('helper-a'));
    const b = await makeTestPki(await newDir('helper-b'), ['alice', 'bob']);
    assert.deepEqual(Object.keys(a.clients), ['client1']);
    assert.deepEqual(Object.keys(b.clients), ['alice', 'bob']);
    assert.equal(await readFile(a.caCert, 'utf8'), await readFile(b.caCert, 'utf8'));
    assert.equal(await readFile(a.serverCert, 'utf8'), await readFile(b.serverCert, 'utf8'));
    for (const key of [b.caKey, b.serverKey, b.clients['alice']?.key ?? '', b.clients['bob']?.key ?? '']) {
      assert.equal(mode(await stat(key)), 0o600, key);
    }
    const v = await openssl('verify', '-CAfile', b.caCert, '-purpose', 'sslclient', b.clients['alice']?.cert ?? '', b.clients['bob']?.cert ?? '');
    assert.ok(v.ok, v.out);
    const s = await openssl('verify', '-CAfile', b.caCert, '-purpose', 'sslserver', b.serverCert);
    assert.ok(s.ok, s.out);
    assert.match(await x509Text(b.clients['bob']?.cert ?? ''), /Subject: CN = bob/);
  });

  it('issueClient adds a client certificate to an existing PKI', async () => {
    const pki = await makeTestPki(await newDir('helper-c'));
    const carol = await issueClient(pki, 'carol', { organizationalUnit: 'ops' });
    assert.deepEqual(pki.clients['carol'], carol);
    assert.equal(carol.cert, join(pki.dir, 'carol.crt'));
    assert.equal(mode(await stat(carol.key)), 0o600);
    const v = await openssl('verify', '-CAfile', pki.caCert, '-purpose', 'sslclient', carol.cert);
    assert.ok(v.ok, v.out);
    assert.match(await x509Text(carol.cert), /Subject: OU = ops, CN = carol/);
    await assert.rejects(issueClient(pki, '../escape'));
  });
});
