/**
 * A real broker set up for device provisioning (issue 13), in-process on port 0: a data
 * directory with the built-in PKI (root and issuing CA, a server certificate for
 * localhost), one mqtts listener that takes claim certificates, device certificates and
 * one-time tokens (`auth: [certificate, provision-token]`, client certificates optional),
 * an ACL whose `sensor` role owns `devices/${cert.cn}/#`, and templates the test chooses.
 * Claims and tokens are made as the CLI makes them (PkiService + provisioning.db).
 * Must not: be imported by src/ (test-only).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { connectMqtt } from '../integration/support.js';
import { claimCommonName, CLAIM_OU } from '../../src/provisioning/claim-identity.js';
import { formatToken, newSecret, newTokenId, secretHash } from '../../src/provisioning/secrets.js';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../../src/provisioning/sqlite-provisioning-store.js';
import { LOCAL_SERVER_SANS } from '../../src/pki/index.js';
import { parseConfig } from '../../src/server/load-config.js';
import { PkiService } from '../../src/server/pki-service.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import type { Logger } from '../../src/core/logger.js';

export const SENSOR_TEMPLATE = {
  commonName: 'sensor-${serialNumber}',
  organizationalUnit: 'sensors',
  sans: ['uri:urn:bastion:sensor:${serialNumber}'],
  days: 30,
  roles: ['sensor'],
  parameters: { serialNumber: { pattern: '[A-Z0-9]{4,16}' } },
};

export interface ProvisioningBroker {
  server: BastionServer;
  port: number;
  dir: string;
  dataDir: string;
  pkiDir: string;
  /** The CA chain PEM a device trusts the broker with. */
  caPem: string;
  url: string;
  /** The HTTPS admin listener's port (EST is served there), when `admin` was given. */
  adminPort: number | null;
  /** A claim certificate for `template` (recorded as `bastion cert issue --profile claim` does). */
  claim(template: string, opts?: { maxDevices?: number; days?: number }): Promise<{ cert: string; key: string; serialNumber: string }>;
  /** A client certificate for `commonName` from this broker's PKI (as `bastion cert issue` makes it), valid 2 days. */
  clientCert(commonName: string): Promise<{ cert: string; key: string }>;
  /** A one-time token for `template` (as `bastion provision token create` does). */
  token(template: string, ttlMs?: number): string;
  /** MQTT.js over mqtts to this broker (reconnect off), with `ca` set. */
  connect(opts: IClientOptions): Promise<MqttClient>;
  stop(): Promise<void>;
  /** Stops this broker and starts another on the same data directory (a restart). */
  restart(): Promise<ProvisioningBroker>;
}

export interface ProvisioningBrokerOptions {
  templates?: Record<string, unknown>;
  /** Keys merged over the provisioning section. */
  provisioning?: Record<string, unknown>;
  /** The authz section instead of the default one (the `sensor` role on `devices/${cert.cn}/#`). */
  authz?: Record<string, unknown>;
  logger?: Logger;
  /** Also start the HTTPS admin API (EST) on 127.0.0.1:0 with the broker's certificate and the PKI's chain as client CA; keys merged over that section. */
  admin?: Record<string, unknown>;
  /** Reuse a directory (a restart). */
  dir?: string;
  /** Remove `dir` at stop (a restarted broker owns its predecessor's directory). */
  ownsDir?: boolean;
  /** The cluster section (a node of a cluster). */
  cluster?: Record<string, unknown>;
  /** Copy this PKI directory instead of making a new one (the nodes of a cluster share one CA). */
  pkiFrom?: string;
  /** The defender section (behaviour detection, audits). */
  defender?: Record<string, unknown>;
  /** The limits section (a bench connecting thousands of clients from one address turns them off). */
  limits?: Record<string, unknown>;
}

/** A PKI as the helper makes one: root, issuing CA and a server certificate for localhost (`issued/broker.*`). */
export async function setUpPki(pkiDir: string): Promise<void> {
  const pki = await PkiService.init(pkiDir, { commonName: 'Provisioning Test Root' });
  try {
    await pki.createIntermediate({ commonName: 'Provisioning Test Issuing CA' });
    await pki.issue({ profile: 'server', commonName: 'localhost', sans: [...LOCAL_SERVER_SANS], fileStem: 'broker' });
  } finally {
    pki.close();
  }
}

export async function startProvisioningBroker(opts: ProvisioningBrokerOptions = {}): Promise<ProvisioningBroker> {
  const fresh = opts.dir === undefined;
  let ownsDir = fresh || opts.ownsDir === true;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bastion-provisioning-'));
  const dataDir = join(dir, 'data');
  const pkiDir = join(dataDir, 'pki');
  if (fresh && opts.pkiFrom !== undefined) cpSync(opts.pkiFrom, pkiDir, { recursive: true });
  else if (fresh) await setUpPki(pkiDir);
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
          tls: { cert: join(issued, 'broker.crt'), key: join(issued, 'broker.key'), ca: join(pkiDir, 'ca-chain.crt'), clientCerts: 'optional' },
          auth: { providers: ['certificate', 'provision-token'] },
        },
      ],
      persistence: { enabled: true },
      log: { level: 'silent' },
      authz: opts.authz ?? { policy: 'rules', roles: { sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] } }, bindings: [] },
      provisioning: { templates: opts.templates ?? { sensor: SENSOR_TEMPLATE }, ...opts.provisioning },
      ...(opts.cluster !== undefined ? { cluster: opts.cluster } : {}),
      ...(opts.defender !== undefined ? { defender: opts.defender } : {}),
      ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
      ...(opts.admin !== undefined ? { admin: { port: 0, tls: { cert: join(issued, 'broker.crt'), key: join(issued, 'broker.key'), ca: join(pkiDir, 'ca-chain.crt') }, ...opts.admin } } : {}),
    },
    dir,
  );
  const server = await startServer({ config, baseDir, ...(opts.logger !== undefined ? { logger: opts.logger } : {}) });
  const port = server.listeners[0]!.port;
  const caPem = readFileSync(join(pkiDir, 'ca-chain.crt'), 'utf8');
  const url = `mqtts://127.0.0.1:${port}`;
  const self: ProvisioningBroker = {
    server,
    port,
    dir,
    dataDir,
    pkiDir,
    caPem,
    url,
    adminPort: server.admin?.port ?? null,
    async claim(template, o = {}) {
      const pki = await PkiService.open(pkiDir);
      try {
        const cn = claimCommonName(template);
        const files = await pki.issue({ profile: 'client', commonName: cn, organizationalUnit: CLAIM_OU, days: o.days ?? 30, fileStem: cn });
        const store = SqliteProvisioningStore.open(join(dataDir, PROVISIONING_DB_FILE));
        try {
          store.addClaim({ serialNumber: files.serialNumber, template, maxDevices: o.maxDevices ?? 0, expiresAt: files.notAfter.getTime(), createdAt: Date.now() });
        } finally {
          store.close();
        }
        return { cert: readFileSync(files.certPath, 'utf8'), key: readFileSync(files.keyPath, 'utf8'), serialNumber: files.serialNumber };
      } finally {
        pki.close();
      }
    },
    async clientCert(commonName) {
      const pki = await PkiService.open(pkiDir);
      try {
        const files = await pki.issue({ profile: 'client', commonName, days: 2, fileStem: commonName });
        return { cert: readFileSync(files.certPath, 'utf8'), key: readFileSync(files.keyPath, 'utf8') };
      } finally {
        pki.close();
      }
    },
    token(template, ttlMs = 3_600_000) {
      const id = newTokenId();
      const secret = newSecret();
      const store = SqliteProvisioningStore.open(join(dataDir, PROVISIONING_DB_FILE));
      try {
        store.addToken({ id, template, expiresAt: Date.now() + ttlMs, createdAt: Date.now() }, secretHash(secret));
      } finally {
        store.close();
      }
      return formatToken(id, secret);
    },
    connect(o) {
      return connectMqtt(url, { ca: caPem, protocolVersion: 5, ...o });
    },
    async stop() {
      await server.stop();
      if (ownsDir) rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      const handOver = ownsDir;
      ownsDir = false;
      await server.stop();
      return startProvisioningBroker({ ...opts, dir, ownsDir: handOver });
    },
  };
  return self;
}
