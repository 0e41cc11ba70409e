/**
 * Certificates for the mutual-TLS runs, made with Bastion's own PKI (src/pki): a root CA,
 * a server certificate for 127.0.0.1 / localhost (ECDSA P-256, and one on RSA-2048 for the
 * handshake comparison) and one client certificate (P-256). Owns: writing them to a directory (keys mode 0600). Must not: be reused outside
 * the bench (throw-away keys).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRootCa, issueCertificate } from '../src/pki/index.js';
import type { TlsMaterial } from './worker-api.js';

export interface BenchPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** The same server names on an RSA-2048 key (handshake-cost comparison). */
  rsaServerCert: string;
  rsaServerKey: string;
  clientCert: string;
  clientKey: string;
  /** The client side as PEM strings, for the workers. */
  client: TlsMaterial;
}

export const BENCH_CLIENT_CN = 'bench-client';

export async function makeBenchPki(dir: string): Promise<BenchPki> {
  const ca = await createRootCa({ commonName: 'Bastion bench CA' });
  const serverSans = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
  ] as const;
  const server = await issueCertificate({
    ca,
    profile: 'server',
    commonName: 'localhost',
    sans: [...serverSans],
  });
  const rsaServer = await issueCertificate({ ca, profile: 'server', commonName: 'localhost', keyAlgorithm: 'rsa-2048', sans: [...serverSans] });
  const client = await issueCertificate({ ca, profile: 'client', commonName: BENCH_CLIENT_CN });
  const pki: BenchPki = {
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    rsaServerCert: join(dir, 'server-rsa.crt'),
    rsaServerKey: join(dir, 'server-rsa.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    client: { ca: ca.certPem, cert: client.certPem, key: client.keyPem },
  };
  await writeFile(pki.caCert, ca.certPem, { mode: 0o644 });
  await writeFile(pki.serverCert, server.certPem, { mode: 0o644 });
  await writeFile(pki.serverKey, server.keyPem, { mode: 0o600 });
  await writeFile(pki.rsaServerCert, rsaServer.certPem, { mode: 0o644 });
  await writeFile(pki.rsaServerKey, rsaServer.keyPem, { mode: 0o600 });
  await writeFile(pki.clientCert, client.certPem, { mode: 0o644 });
  await writeFile(pki.clientKey, client.keyPem, { mode: 0o600 });
  return pki;
}
