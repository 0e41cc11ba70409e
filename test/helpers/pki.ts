/**
 * Test PKI on disk for every test that needs TLS: a CA, a server certificate for
 * localhost / 127.0.0.1 / ::1 and client certificates, written as files (keys mode 0600).
 * The CA, the server certificate and the default client certificates are generated once
 * per test process and cached, so repeated calls in one test file cost only file writes.
 * Must not: be imported by src/ (test-only).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createRootCa, issueCertificate, issueLocalServerCertificate, type CaMaterial, type IssueCertificateOptions, type IssuedCertificate } from '../../src/pki/index.js';

/** Paths of one client certificate and its private key. */
export interface TestClientFiles {
  cert: string;
  key: string;
}

/** A test PKI on disk. Every string is a file path. */
export interface TestPki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** By client name; the certificate's CN is the name. */
  clients: Record<string, TestClientFiles>;
}

/**
 * Extra settings for `issueClient`. The CN is the client name unless `commonName` says
 * otherwise (for hostile CNs such as `a+b` that cannot name a file).
 */
export type TestClientOptions = Pick<IssueCertificateOptions, 'organizationalUnit' | 'sans' | 'keyAlgorithm' | 'days' | 'now'> & { commonName?: string };

interface SharedMaterial {
  ca: CaMaterial;
  server: IssuedCertificate;
}

let shared: Promise<SharedMaterial> | undefined;
const clientCache = new Map<string, Promise<IssuedCertificate>>();

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const RESERVED = new Set(['ca', 'server']);

function assertClientName(name: string): void {
  if (!SAFE_NAME.test(name) || RESERVED.has(name)) {
    throw new Error(`test client name ${JSON.stringify(name)} must match ${SAFE_NAME} and not be "ca" or "server" (it names files)`);
  }
}

function sharedMaterial(): Promise<SharedMaterial> {
  shared ??= (async () => {
    const ca = await createRootCa({ commonName: 'Bastion Test CA' });
    const server = await issueLocalServerCertificate(ca);
    return { ca, server };
  })();
  // A failed generation is not cached: the next call tries again.
  shared.catch(() => {
    shared = undefined;
  });
  return shared;
}

/** The in-memory CA every makeTestPki() in this process shares (to issue special certificates). */
export async function testCa(): Promise<CaMaterial> {
  return (await sharedMaterial()).ca;
}

async function writeCert(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o644 });
}

async function writeKey(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o600 });
}

async function writeClient(dir: string, name: string, issued: IssuedCertificate): Promise<TestClientFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await writeCert(files.cert, issued.certPem);
  await writeKey(files.key, issued.keyPem);
  return files;
}

/**
 * Writes `ca.crt`, `ca.key`, `server.crt`, `server.key` and `<name>.crt` / `<name>.key`
 * for each client into `dir` (created if missing). Client certificates have CN = name.
 */
export async function makeTestPki(dir: string, clients: string[] = ['client1']): Promise<TestPki> {
  clients.forEach(assertClientName);
  const root = resolve(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const { ca, server } = await sharedMaterial();
  const pki: TestPki = {
    dir: root,
    caCert: join(root, 'ca.crt'),
    caKey: join(root, 'ca.key'),
    serverCert: join(root, 'server.crt'),
    serverKey: join(root, 'server.key'),
    clients: {},
  };
  await writeCert(pki.caCert, ca.certPem);
  await writeKey(pki.caKey, ca.keyPem);
  await writeCert(pki.serverCert, server.certPem);
  await writeKey(pki.serverKey, server.keyPem);
  for (const name of clients) {
    let issued = clientCache.get(name);
    if (issued === undefined) {
      issued = issueCertificate({ ca, profile: 'client', commonName: name });
      clientCache.set(name, issued);
      issued.catch(() => clientCache.delete(name));
    }
    pki.clients[name] = await writeClient(root, name, await issued);
  }
  return pki;
}

/**
 * Issues one more client certificate (CN = name) from the PKI's CA files, writes
 * `<name>.crt` / `<name>.key` into `pki.dir`, records it in `pki.clients` and returns it.
 */
export async function issueClient(pki: TestPki, name: string, options: TestClientOptions = {}): Promise<TestClientFiles> {
  assertClientName(name);
  const ca: CaMaterial = { certPem: await readFile(pki.caCert, 'utf8'), keyPem: await readFile(pki.caKey, 'utf8') };
  const { commonName, ...rest } = options;
  const issued = await issueCertificate({ ...rest, ca, profile: 'client', commonName: commonName ?? name });
  const files = await writeClient(pki.dir, name, issued);
  pki.clients[name] = files;
  return files;
}
