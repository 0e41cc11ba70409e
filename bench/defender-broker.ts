/**
 * The real broker of the end-to-end defender simulation (issue 15), in-process: a data
 * directory with the built-in PKI (root, issuing CA, server certificate for localhost, as
 * test/helpers/provisioning-broker.ts makes it), one mqtts listener on 127.0.0.1:0 that
 * takes client certificates (and refuses everything else: failed logins are real
 * auth.failure events), the built-in detection rules, and detection's clock and windows
 * driven by the simulation (`defenderClock`, manual windows). Owns: the config, the
 * device certificates (issued once per run, reused by every connect). Must not: listen
 * beyond loopback, or outlive `stop()`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/server/load-config.js';
import { PkiService } from '../src/server/pki-service.js';
import { startServer, type BastionServer } from '../src/server/server.js';
import { setUpPki } from '../test/helpers/provisioning-broker.js';

export interface DeviceCredential {
  cert: string;
  key: string;
}

export interface FleetBroker {
  server: BastionServer;
  port: number;
  /** The CA chain the devices trust the broker with. */
  caPem: string;
  /** By common name. */
  credentials: Map<string, DeviceCredential>;
  stop(): Promise<void>;
}

/**
 * Devices (CN `dev-*`, bound to role `sensor`) publish their telemetry and status under
 * their own name and own their command subtree (`cmd/<cn>/#`, publish and subscribe: a
 * common, too broad grant, so a device can write into its own command channel; what it
 * does there is for detection to see). Anything else is denied.
 */
const AUTHZ = {
  policy: 'rules',
  roles: {
    sensor: {
      rules: [
        { effect: 'allow', action: 'publish', topic: 'tele/${cert.cn}/#' },
        { effect: 'allow', action: 'publish', topic: 'status/${cert.cn}' },
        { effect: 'allow', action: 'all', topic: 'cmd/${cert.cn}/#' },
      ],
    },
    operator: { rules: [{ effect: 'allow', action: 'subscribe', topic: '$bastion/alerts/#' }] },
  },
  bindings: [
    { role: 'sensor', attribute: 'cert.cn', value: 'dev-*' },
    { role: 'operator', attribute: 'cert.cn', value: 'ops' },
  ],
};

export interface FleetBrokerOptions {
  /** Common names to issue certificates for. */
  names: string[];
  /** Detection's clock (virtual time). */
  now: () => number;
  /** `defender.detect` keys over the defaults (the built-in rules, 30 s windows). */
  detect?: Record<string, unknown>;
  /** `limits` keys. */
  limits?: Record<string, unknown>;
}

export async function startFleetBroker(opts: FleetBrokerOptions): Promise<FleetBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-defender-fleet-'));
  try {
    const dataDir = join(dir, 'data');
    const pkiDir = join(dataDir, 'pki');
    await setUpPki(pkiDir);
    const credentials = new Map<string, DeviceCredential>();
    const pki = await PkiService.open(pkiDir);
    try {
      for (const cn of opts.names) {
        const files = await pki.issue({ profile: 'client', commonName: cn, days: 2, fileStem: cn });
        credentials.set(cn, { cert: readFileSync(files.certPath, 'utf8'), key: readFileSync(files.keyPath, 'utf8') });
      }
    } finally {
      pki.close();
    }
    const issued = join(pkiDir, 'issued');
    const { config, baseDir } = parseConfig(
      {
        dataDir,
        listeners: [
          {
            name: 'mqtts',
            protocol: 'mqtts',
            host: '127.0.0.1',
            port: 0,
            // Optional: a login without a certificate reaches the authentication chain and is refused there (auth.failure), not at TLS.
            tls: { cert: join(issued, 'broker.crt'), key: join(issued, 'broker.key'), ca: join(pkiDir, 'ca-chain.crt'), clientCerts: 'optional' },
            auth: { providers: ['certificate'] },
          },
        ],
        persistence: { enabled: false },
        log: { level: 'silent' },
        authz: AUTHZ,
        ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
        defender: { detect: { windowSeconds: 30, ...opts.detect }, audit: { intervalSeconds: 0 } },
      },
      dir,
    );
    const server = await startServer({ config, baseDir, defenderClock: { now: opts.now, manualWindows: true } });
    return {
      server,
      port: server.listeners[0]!.port,
      caPem: readFileSync(join(pkiDir, 'ca-chain.crt'), 'utf8'),
      credentials,
      async stop() {
        try {
          await server.stop();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
