/**
 * The config used when `bastion serve` is started without one: mutual TLS on
 * 127.0.0.1:8883 with the PKI made on first start (root + intermediate), client
 * certificates checked against the root and the CRLs, and the CRLs re-signed by the
 * broker as they age. Nothing plaintext, nothing anonymous. No `authz` section: the
 * default device policy applies (security/authz/default-policy.ts). The admin listener with
 * the web console on 127.0.0.1 (9443 unless told otherwise), for the token made on first
 * start (console-token.ts) or an operator certificate from the same PKI.
 */
import { relative } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import { configSchema } from '../core/config.js';
import type { DevPkiPaths } from './dev-pki.js';
import { DEFAULT_DATA_DIR } from './pki-layout.js';

/** `consolePort` null: no admin listener (`bastion serve --no-console`). */
export function zeroConfig(dataDir: string, pki: DevPkiPaths, port = 8883, consolePort: number | null = null): BastionConfig {
  return configSchema.parse({
    dataDir,
    listeners: [
      {
        name: 'mqtts',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        // The server certificate file holds leaf + intermediate; clients trust the root only.
        tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.rootCert, crl: pki.crl, clientCerts: 'required' },
        allowAnonymous: false,
      },
    ],
    pki: { dir: pki.dir, manageCrl: true },
    // SECURITY: loopback only; tokens or operator certificates (OU operators) from this PKI.
    ...(consolePort !== null ? { admin: { host: '127.0.0.1', port: consolePort, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.rootCert, crl: pki.crl, clientCerts: 'optional' } } } : {}),
  });
}

/** The command lines that connect to a zero-config broker and issue the next device, for the banner. */
export function connectHints(pki: DevPkiPaths, port: number, cwd: string, dataDirArg?: string, cli = 'bastion'): { connect: string[]; nextDevice: string } {
  const rel = (p: string): string => {
    const r = relative(cwd, p);
    return r.startsWith('..') ? p : r;
  };
  const tlsArgs = `--cafile ${rel(pki.rootCert)} --cert ${rel(pki.clientCert)} --key ${rel(pki.clientKey)}`;
  const dataDir = dataDirArg !== undefined && dataDirArg !== DEFAULT_DATA_DIR ? ` --data-dir ${dataDirArg}` : '';
  return {
    connect: [
      // The default policy lets a device use only devices/<its CN>/# (and read broadcast/#).
      `mosquitto_sub -h localhost -p ${port} ${tlsArgs} -t 'devices/${pki.clientCommonName}/#' -v`,
      `mosquitto_pub -h localhost -p ${port} ${tlsArgs} -t devices/${pki.clientCommonName}/hello -m 'hello, secure world'`,
    ],
    nextDevice: `${cli} cert issue --profile client --cn device-2${dataDir}`,
  };
}
