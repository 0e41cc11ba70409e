/**
 * An in-process broker for the authentication tests: listeners (and the `authn` section)
 * chosen by the test, certificates from our own PKI, a recording logger, and a data dir the
 * `bastion user` CLI can write to while the broker runs. Must not: be imported by src/.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PasswordHasher } from '../../src/security/authn/password-hash.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { RecordingLogger } from '../integration/tls-support.js';
import { BASTION_MAIN, run, type ProcResult } from '../integration/support.js';
import { makeTestPki, type TestPki } from './pki.js';

export interface AuthBroker {
  server: BastionServer;
  /** Listener name → port. */
  port(name: string): number;
  pki: TestPki;
  dir: string;
  dataDir: string;
  logger: RecordingLogger;
  /** `bastion user add NAME --password-stdin --data-dir <dataDir>`. */
  addUser(name: string, password: string): Promise<ProcResult>;
  stop(): Promise<void>;
}

export interface AuthBrokerOptions {
  /** Listener configs; `tlsFor(pki, clientCerts)` gives the tls section from the test PKI. */
  listeners: (pki: TestPki) => Array<Record<string, unknown>>;
  authn?: Record<string, unknown>;
  passwordHasher?: PasswordHasher;
  clients?: string[];
  /** The config's `limits` section (default: the secure defaults). */
  limits?: Record<string, unknown>;
}

/** The tls section of a listener, with the test PKI's server certificate and CA. */
export function tlsFor(pki: TestPki, clientCerts: 'required' | 'optional' | 'none'): Record<string, unknown> {
  return { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, clientCerts };
}

export async function startAuthBroker(opts: AuthBrokerOptions): Promise<AuthBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-authn-'));
  const pki = await makeTestPki(join(dir, 'pki'), opts.clients ?? ['device1']);
  const dataDir = join(dir, 'data');
  const { config, baseDir } = parseConfig(
    { dataDir, listeners: opts.listeners(pki), persistence: { enabled: false }, log: { level: 'silent' }, ...(opts.authn !== undefined ? { authn: opts.authn } : {}), ...(opts.limits !== undefined ? { limits: opts.limits } : {}) },
    dir,
  );
  const logger = new RecordingLogger();
  const server = await startServer({ config, baseDir, logger, ...(opts.passwordHasher !== undefined ? { passwordHasher: opts.passwordHasher } : {}) });
  return {
    server,
    port(name) {
      const i = config.listeners.findIndex((l) => l.name === name);
      return server.listeners[i]!.port;
    },
    pki,
    dir,
    dataDir,
    logger,
    addUser: (name, password) => run('node', [BASTION_MAIN, 'user', 'add', name, '--password-stdin', '--data-dir', dataDir], { input: `${password}\n` }),
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
