/**
 * The config used when `bastion serve` is started without one: mutual TLS on
 * 127.0.0.1:8883 with a development PKI made on first start. Nothing plaintext, nothing
 * anonymous.
 */
import { relative } from 'node:path';
import type { BastionConfig } from '../core/config.js';
import { configSchema } from '../core/config.js';
import type { DevPkiPaths } from './dev-pki.js';

export function zeroConfig(dataDir: string, pki: DevPkiPaths, port = 8883): BastionConfig {
  return configSchema.parse({
    dataDir,
    listeners: [
      {
        name: 'mqtts',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts: 'required' },
        allowAnonymous: false,
      },
    ],
  });
}

/** The command lines that connect to a zero-config broker, for the start-up banner. */
export function connectHints(pki: DevPkiPaths, port: number, cwd: string): string[] {
  const rel = (p: string): string => {
    const r = relative(cwd, p);
    return r.startsWith('..') ? p : r;
  };
  const tlsArgs = `--cafile ${rel(pki.caCert)} --cert ${rel(pki.clientCert)} --key ${rel(pki.clientKey)}`;
  return [
    `mosquitto_sub -h localhost -p ${port} ${tlsArgs} -t 'demo/#' -v`,
    `mosquitto_pub -h localhost -p ${port} ${tlsArgs} -t demo/hello -m 'hello, secure world'`,
  ];
}
