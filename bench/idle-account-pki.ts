/**
 * Certificates for the idle-footprint account (bench/idle-account.ts), made with Bastion's
 * own PKI (src/pki) like bench/certs.ts, plus one client certificate per device: a fleet's
 * devices each have their own identity, and Bastion keeps per-identity state (the
 * defender's window, the described certificate) that one shared certificate would hide.
 * Owns: writing the CA, server and client material to a directory (keys mode 0600) and the
 * devices' certificates to one JSON file. Must not: be reused outside the bench (throw-away
 * keys).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRootCa, issueCertificate } from '../src/pki/index.js';

export interface IdlePki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** One shared client certificate (`--shared-cert`). */
  clientCert: string;
  clientKey: string;
  /** JSON file: [{ cert, key }] PEM, one per device (CN device-<i>), or null when none were made. */
  devicesFile: string | null;
}

export interface DeviceCert {
  cert: string;
  key: string;
}

export async function makeIdlePki(dir: string, devices: number): Promise<IdlePki> {
  const ca = await createRootCa({ commonName: 'Bastion idle-account CA' });
  const server = await issueCertificate({
    ca,
    profile: 'server',
    commonName: 'localhost',
    sans: [
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
    ],
  });
  const client = await issueCertificate({ ca, profile: 'client', commonName: 'idle-client' });
  const pki: IdlePki = {
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    devicesFile: devices > 0 ? join(dir, 'devices.json') : null,
  };
  await writeFile(pki.caCert, ca.certPem, { mode: 0o644 });
  await writeFile(pki.serverCert, server.certPem, { mode: 0o644 });
  await writeFile(pki.serverKey, server.keyPem, { mode: 0o600 });
  await writeFile(pki.clientCert, client.certPem, { mode: 0o644 });
  await writeFile(pki.clientKey, client.keyPem, { mode: 0o600 });
  if (pki.devicesFile !== null) {
    const list: DeviceCert[] = [];
    for (let i = 0; i < devices; i++) {
      const d = await issueCertificate({ ca, profile: 'client', commonName: `device-${i}` });
      list.push({ cert: d.certPem, key: d.keyPem });
    }
    // SECURITY: holds private keys (throw-away ones): owner-only, like the key files.
    await writeFile(pki.devicesFile, JSON.stringify(list), { mode: 0o600 });
  }
  return pki;
}
