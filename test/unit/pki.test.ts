/**
 * Tests for src/pki, src/server/dev-pki.ts and test/helpers/pki.ts against real tools:
 * OpenSSL verifies chains and prints extensions; a real node:tls server enforces mTLS.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { chmod, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { BastionError } from '../../src/core/errors.js';
import {
  PkiError,
  createRootCa,
  issueCertificate,
  type CertificateWithKey,
  type KeyAlgorithm,
  type PkiErrorCode,
} from '../../src/pki/index.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { issueClient, makeTestPki, testCa, type TestPki } from '../helpers/pki.js';

const OPENSSL = '/usr/bin/openssl';
const run = promisify(execFile);
const TIMEOUT_MS = 5_000;

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bastion-pki-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let seq = 0;
async function newDir(label: string): Promise<string> {
  return mkdtemp(join(tmp, `${label}-${++seq}-`));
}

async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(OPENSSL, args);
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function x509Text(certPath: string): Promise<string> {
  const { ok, out } = await openssl('x509', '-in', certPath, '-noout', '-text');
  assert.ok(ok, out);
  return out;
}

/** The lines of `openssl x509 -text` that follow an extension's heading, up to the next extension. */
function extensionBlock(text: string, heading: string): string {
  const start = text.indexOf(heading);
  assert.notEqual(start, -1, `no ${heading} in:\n${text}`);
  const rest = text.slice(start + heading.length);
  const end = rest.search(/\n\s+(X509v3 |Authority Information|Signature Algorithm)/);
  return heading + (end === -1 ? rest : rest.slice(0, end));
}

function mode(st: { mode: number }): number {
  return st.mode & 0o777;
}

async function assertPkiError(promise: Promise<unknown>, code: PkiErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PkiError, `expected PkiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

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

describe('createRootCa and issueCertificate', () => {
  for (const keyAlgorithm of ['ec-p256', 'rsa-2048'] as const satisfies readonly KeyAlgorithm[]) {
    describe(keyAlgorithm, () => {
      let dir: string;
      let ca: CertificateWithKey;
      let server: CertificateWithKey;
      let client: CertificateWithKey;
      const issuedAt = new Date();
      const files = { ca: '', server: '', serverKey: '', client: '', clientKey: '' };

      before(async () => {
        dir = await newDir(keyAlgorithm);
        ca = await createRootCa({ commonName: `Test CA ${keyAlgorithm}`, keyAlgorithm });
        server = await issueCertificate({
          ca,
          profile: 'server',
          commonName: 'localhost',
          keyAlgorithm,
          sans: [
            { type: 'dns', value: 'localhost' },
            { type: 'ip', value: '127.0.0.1' },
            { type: 'ip', value: '::1' },
          ],
          now: issuedAt,
        });
        client = await issueCertificate({ ca, profile: 'client', commonName: 'device-42', organizationalUnit: 'sensors', keyAlgorithm });
        for (const [name, pem] of [
          ['ca', ca.certPem],
          ['server', server.certPem],
          ['serverKey', server.keyPem],
          ['client', client.certPem],
          ['clientKey', client.keyPem],
        ] as const) {
          files[name] = join(dir, `${name}.pem`);
          await writeFile(files[name], pem);
        }
      });

      it('openssl verify accepts the server and client certificates for their purposes', async () => {
        const s = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslserver', files.server);
        assert.ok(s.ok, s.out);
        assert.match(s.out, /: OK/);
        const c = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslclient', files.client);
        assert.ok(c.ok, c.out);
        assert.match(c.out, /: OK/);
      });

      it('openssl verify refuses each certificate for the other purpose (EKU is enforced)', async () => {
        const s = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslclient', files.server);
        assert.equal(s.ok, false, s.out);
        assert.match(s.out, /unsuitable certificate purpose/);
        const c = await openssl('verify', '-CAfile', files.ca, '-purpose', 'sslserver', files.client);
        assert.equal(c.ok, false, c.out);
        assert.match(c.out, /unsuitable certificate purpose/);
      });

      it('the CA has critical basicConstraints CA:TRUE, keyCertSign + cRLSign and key identifiers', async () => {
        const text = await x509Text(files.ca);
        assert.match(extensionBlock(text, 'X509v3 Basic Constraints'), /critical\s+CA:TRUE/);
        assert.match(extensionBlock(text, 'X509v3 Key Usage'), /critical\s+Certificate Sign, CRL Sign\s*$/);
        assert.match(text, /X509v3 Subject Key Identifier/);
        assert.doesNotMatch(text, /Extended Key Usage/);
      });

      it('the server certificate has EKU serverAuth, SANs, CA:FALSE and the right keyUsage', async () => {
        const text = await x509Text(files.server);
        const eku = extensionBlock(text, 'X509v3 Extended Key Usage');
        assert.match(eku, /TLS Web Server Authentication/);
        assert.doesNotMatch(eku, /Client/);
        assert.match(extensionBlock(text, 'X509v3 Basic Constraints'), /critical\s+CA:FALSE/);
        const usage = keyAlgorithm === 'rsa-2048' ? 'Digital Signature, Key Encipherment' : 'Digital Signature';
        assert.match(extensionBlock(text, 'X509v3 Key Usage'), new RegExp(`critical\\s+${usage}\\s*$`));
        assert.match(extensionBlock(text, 'X509v3 Subject Alternative Name'), /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1\s*$/);
        assert.match(text, /X509v3 Subject Key Identifier/);
        assert.match(text, /X509v3 Authority Key Identifier/);
      });

      it('the client certificate has EKU clientAuth, the OU and CN, and an AKI equal to the CA SKI', async () => {
        const text = await x509Text(files.client);
        const eku = extensionBlock(text, 'X509v3 Extended Key Usage');
        assert.match(eku, /TLS Web Client Authentication/);
        assert.doesNotMatch(eku, /Server/);
        assert.match(text, /Subject: OU = sensors, CN = device-42/);
        const caSki = (await openssl('x509', '-in', files.ca, '-noout', '-ext', 'subjectKeyIdentifier')).out.split('\n')[1]?.trim();
        const aki = (await openssl('x509', '-in', files.client, '-noout', '-ext', 'authorityKeyIdentifier')).out.split('\n')[1]?.trim();
        assert.ok(caSki);
        assert.equal(aki?.replace(/^keyid:/, ''), caSki);
      });

      it('private keys are PKCS#8 PEM that OpenSSL reads and that match their certificates', async () => {
        for (const [cert, key] of [
          [server.certPem, server.keyPem],
          [client.certPem, client.keyPem],
          [ca.certPem, ca.keyPem],
        ] as const) {
          assert.match(key, /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
          assert.ok(new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)));
        }
        const r = await openssl('pkey', '-in', files.serverKey, '-noout');
        assert.ok(r.ok, r.out);
        const type = keyAlgorithm === 'rsa-2048' ? 'rsa' : 'ec';
        assert.equal(createPrivateKey(server.keyPem).asymmetricKeyType, type);
      });

      it('serials are random positive 16-byte values; serial and fingerprint match Node and OpenSSL', async () => {
        for (const c of [ca, server, client]) {
          const node = new X509Certificate(c.certPem);
          assert.match(c.serialNumber, /^[4-7][0-9A-F]{31}$/);
          assert.equal(c.serialNumber, node.serialNumber);
          assert.equal(c.fingerprint256, node.fingerprint256);
        }
        assert.equal(new Set([ca.serialNumber, server.serialNumber, client.serialNumber]).size, 3);
        const serial = await openssl('x509', '-in', files.server, '-noout', '-serial');
        assert.equal(serial.out.trim(), `serial=${server.serialNumber}`);
      });

      it('notBefore is one minute before issuance', () => {
        const node = new X509Certificate(server.certPem);
        const notBefore = new Date(node.validFrom).getTime();
        const expected = issuedAt.getTime() - 60_000;
        assert.ok(Math.abs(notBefore - expected) <= 1_000, `notBefore ${node.validFrom}, issued at ${issuedAt.toISOString()}`);
        const notAfter = new Date(node.validTo).getTime();
        assert.ok(Math.abs(notAfter - (issuedAt.getTime() + 365 * 86_400_000)) <= 1_000, node.validTo);
      });
    });
  }

  it('supports ec-p384 and rsa-3072 (RSA CA signing an EC leaf and the reverse)', async () => {
    const dir = await newDir('mixed');
    const p384Ca = await createRootCa({ commonName: 'P-384 CA', keyAlgorithm: 'ec-p384' });
    const rsaLeaf = await issueCertificate({ ca: p384Ca, profile: 'server', commonName: 'broker.example', keyAlgorithm: 'rsa-3072' });
    const rsaCa = await createRootCa({ commonName: 'RSA CA', keyAlgorithm: 'rsa-2048' });
    const ecLeaf = await issueCertificate({ ca: rsaCa, profile: 'client', commonName: 'dev', keyAlgorithm: 'ec-p384' });
    assert.equal(createPrivateKey(rsaLeaf.keyPem).asymmetricKeyDetails?.modulusLength, 3072);
    assert.equal(createPrivateKey(ecLeaf.keyPem).asymmetricKeyDetails?.namedCurve, 'secp384r1');
    for (const [caPem, leafPem, name] of [
      [p384Ca.certPem, rsaLeaf.certPem, 'a'],
      [rsaCa.certPem, ecLeaf.certPem, 'b'],
    ] as const) {
      await writeFile(join(dir, `${name}-ca.pem`), caPem);
      await writeFile(join(dir, `${name}-leaf.pem`), leafPem);
      const r = await openssl('verify', '-CAfile', join(dir, `${name}-ca.pem`), join(dir, `${name}-leaf.pem`));
      assert.ok(r.ok, r.out);
    }
    // A P-384 CA signs with SHA-384; the server profile defaults its SAN to the CN.
    const text = await x509Text(join(dir, 'a-leaf.pem'));
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA384/);
    assert.match(text, /DNS:broker\.example/);
    assert.match(text, /Digital Signature, Key Encipherment/);
  });

  it('rejects bad input with ERR_PKI_INVALID_INPUT', async () => {
    const ca = await testCa();
    const bad: Array<Parameters<typeof issueCertificate>[0]> = [
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'ip', value: '1.2.3' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'ip', value: '::1%eth0' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'dns', value: 'bad_name.example' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'email', value: 'no-at-sign' }] },
      { ca, profile: 'server', commonName: 'x', sans: [{ type: 'uri', value: 'not a uri' }] },
      { ca, profile: 'client', commonName: 'evil\nCN=admin' },
      { ca, profile: 'client', commonName: '' },
      { ca, profile: 'client', commonName: 'x'.repeat(65) },
      { ca, profile: 'client', commonName: 'x', days: 0 },
      { ca, profile: 'client', commonName: 'x', days: 1.5 },
      { ca, profile: 'client', commonName: 'x', keyAlgorithm: 'dsa-1024' as KeyAlgorithm },
      { ca, profile: 'admin' as 'client', commonName: 'x' },
    ];
    for (const options of bad) await assertPkiError(issueCertificate(options), 'ERR_PKI_INVALID_INPUT');
    await assertPkiError(createRootCa({ commonName: 'CA', days: -1 }), 'ERR_PKI_INVALID_INPUT');
  });

  it('refuses to sign with something that is not a usable CA (ERR_PKI_INVALID_CA)', async () => {
    const ca = await testCa();
    const other = await createRootCa({ commonName: 'Other CA' });
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'leaf' });
    // A leaf is not a CA.
    await assertPkiError(issueCertificate({ ca: leaf, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // The key does not belong to the certificate.
    await assertPkiError(issueCertificate({ ca: { certPem: ca.certPem, keyPem: other.keyPem }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // Garbage.
    await assertPkiError(issueCertificate({ ca: { certPem: 'nope', keyPem: ca.keyPem }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    await assertPkiError(issueCertificate({ ca: { certPem: ca.certPem, keyPem: 'nope' }, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
    // Expired CA.
    const old = await createRootCa({ commonName: 'Old CA', days: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    await assertPkiError(issueCertificate({ ca: old, profile: 'client', commonName: 'x' }), 'ERR_PKI_INVALID_CA');
  });

  it('never issues a certificate that outlives its CA', async () => {
    const ca = await createRootCa({ commonName: 'Short CA', days: 10 });
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'x', days: 365 });
    assert.equal(new X509Certificate(leaf.certPem).validTo, new X509Certificate(ca.certPem).validTo);
  });
});

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

  it('rejects a client certificate from another CA', async () => {
    const dir = await newDir('rogue');
    const rogueCa = await createRootCa({ commonName: 'Bastion Test CA' }); // same name, different key
    const rogue = await issueCertificate({ ca: rogueCa, profile: 'client', commonName: 'client1' });
    const files = { cert: join(dir, 'rogue.crt'), key: join(dir, 'rogue.key') };
    await writeFile(files.cert, rogue.certPem);
    await writeFile(files.key, rogue.keyPem, { mode: 0o600 });
    const before = accepted.length;
    const r = await connect('TLSv1.3', files, true);
    assert.equal(r.data, '');
    assert.ok(r.serverError, 'the server reports a TLS client error');
    assert.equal(r.authorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.equal(accepted.length, before);
  });

  it('rejects a server-profile certificate presented as a client certificate', async () => {
    const dir = await newDir('wrong-profile');
    const wrong = await issueCertificate({ ca: await testCa(), profile: 'server', commonName: 'client1' });
    const files = { cert: join(dir, 'wrong.crt'), key: join(dir, 'wrong.key') };
    await writeFile(files.cert, wrong.certPem);
    await writeFile(files.key, wrong.keyPem, { mode: 0o600 });
    const before = accepted.length;
    const r = await connect('TLSv1.3', files, true);
    assert.equal(r.data, '');
    assert.ok(r.serverError, 'the server reports a TLS client error');
    assert.equal(r.authorizationError, 'INVALID_PURPOSE');
    assert.equal(accepted.length, before);
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
