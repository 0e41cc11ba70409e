/**
 * Starts a real Bastion server in-process on port 0 for tests: a plaintext listener
 * (insecure, anonymous) and a mutual-TLS listener with certificates from our own PKI.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { makeTestPki, type TestPki } from './pki.js';
import type { EnhancedAuthMethod } from '../../src/broker/ports.js';
import type { Logger } from '../../src/core/logger.js';

export interface TestBroker {
  server: BastionServer;
  plainPort: number;
  tlsPort: number;
  /** With `webSocket: true`: the ws:// listener (insecure, anonymous like `plain`), else 0. */
  wsPort: number;
  /** With `webSocket: true`: the wss:// listener (client certificates as on `mqtts`), else 0. */
  wssPort: number;
  pki: TestPki;
  dataDir: string;
  stop(): Promise<void>;
}

export interface TestBrokerOptions {
  mqtt?: Record<string, unknown>;
  persistence?: boolean;
  clients?: string[];
  dataDir?: string;
  /** Allow anonymous clients on the TLS listener (certificates become optional). */
  tlsClientCerts?: 'required' | 'optional' | 'none';
  /** Keys merged over the mqtts listener's `tls` section (groups, requirePostQuantum, minVersion…). */
  tls?: Record<string, unknown>;
  /** Allow anonymous clients on the plaintext listener (default true). */
  plainAnonymous?: boolean;
  enhancedAuth?: EnhancedAuthMethod[];
  /** Also start a ws and a wss listener (after the two above), at `wsPath` (default /mqtt). */
  webSocket?: boolean;
  wsPath?: string;
  /** Also start the HTTPS admin API on port 0 (server cert and CA from the test PKI); keys merged over that section (`tls` over its tls). */
  admin?: Record<string, unknown>;
  /** Where the server logs (default: nowhere). */
  logger?: Logger;
  /**
   * The config's `authz` section (default: the explicit allow-all the generic tests rely
   * on); null leaves the section out, so the default device policy applies.
   */
  authz?: Record<string, unknown> | null;
  /** The config's `limits` section (default: the secure defaults). */
  limits?: Record<string, unknown>;
  /** The config's `audit` section. */
  audit?: Record<string, unknown>;
  /** The config's `sys` section. */
  sys?: Record<string, unknown>;
  /** The config's `metrics` section. */
  metrics?: Record<string, unknown>;
  /** The config's `cluster` section (a node of a cluster over NATS). */
  cluster?: Record<string, unknown>;
}

export async function startTestBroker(opts: TestBrokerOptions = {}): Promise<TestBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-test-'));
  const pki = await makeTestPki(join(dir, 'pki'), opts.clients ?? ['client1', 'client2']);
  const dataDir = opts.dataDir ?? join(dir, 'data');
  const { config, baseDir } = parseConfig(
    {
      dataDir,
      listeners: [
        { name: 'plain', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, allowAnonymous: opts.plainAnonymous ?? true },
        {
          name: 'mqtts',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 0,
          tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts: opts.tlsClientCerts ?? 'required', ...opts.tls },
        },
        ...(opts.webSocket === true
          ? [
              { name: 'ws', protocol: 'ws', host: '127.0.0.1', port: 0, insecure: true, allowAnonymous: opts.plainAnonymous ?? true, path: opts.wsPath },
              {
                name: 'wss',
                protocol: 'wss',
                host: '127.0.0.1',
                port: 0,
                path: opts.wsPath,
                tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts: opts.tlsClientCerts ?? 'required' },
              },
            ]
          : []),
      ],
      mqtt: opts.mqtt ?? {},
      persistence: { enabled: opts.persistence ?? false },
      log: { level: 'silent' },
      ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
      ...(opts.audit !== undefined ? { audit: opts.audit } : {}),
      ...(opts.sys !== undefined ? { sys: opts.sys } : {}),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
      ...(opts.cluster !== undefined ? { cluster: opts.cluster } : {}),
      ...(opts.authz === null ? {} : { authz: opts.authz ?? { policy: 'allow-all-INSECURE' } }),
      ...(opts.admin !== undefined
        ? { admin: { port: 0, ...opts.admin, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, ...(opts.admin.tls as Record<string, unknown> | undefined) } } }
        : {}),
    },
    dir,
  );
  const server = await startServer({ config, baseDir, enhancedAuth: opts.enhancedAuth ?? [], ...(opts.logger !== undefined ? { logger: opts.logger } : {}) });
  return {
    server,
    plainPort: server.listeners[0]!.port,
    tlsPort: server.listeners[1]!.port,
    wsPort: server.listeners[2]?.port ?? 0,
    wssPort: server.listeners[3]?.port ?? 0,
    pki,
    dataDir,
    async stop() {
      await server.stop();
      if (opts.dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
