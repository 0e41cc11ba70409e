/**
 * A broker for the device SDK's tests: started in-process from a YAML config file (so the
 * CLI reads the same templates), with the built-in development PKI as its CA, one mqtts
 * listener that takes claim certificates, device certificates and one-time tokens
 * (`clientCerts: optional`, providers certificate and provision-token), provisioning
 * templates, and ACL rules: role `sensor` (what the templates bind) may use
 * `devices/<its CN>/#`, role `observer` (the demo device of the PKI) may subscribe to
 * `devices/#`. Claims and tokens come from the real CLI (`bastion cert issue --profile
 * claim`, `bastion provision token create`), as an operator would make them.
 * Unlike test/helpers/provisioning-broker.ts (in-process records), everything here is
 * what an operator has: a YAML file for `-c`, CA and claim files for the examples' flags.
 * Must not: be imported by src/ (test-only).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../src/core/logger.js';
import { DEV_DEVICE_COMMON_NAME, ensureDevPki } from '../../src/server/dev-pki.js';
import { loadConfigFile } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

export interface DeviceBroker {
  server: BastionServer;
  url: string;
  port: number;
  /** The root CA PEM (what a device verifies the broker with) and its file. */
  caPem: string;
  caFile: string;
  dir: string;
  dataDir: string;
  configFile: string;
  /** The development PKI's demo device, bound to the role `observer` (may subscribe to devices/#). */
  observer: { identity: string; certPem: string; keyPem: string };
  /** `bastion <args> -c <config>` as a child process. */
  bastion(args: string[], withConfig?: boolean): Promise<ProcResult>;
  /** A claim certificate for `template` (files written under dir): paths and PEMs. */
  claim(template: string, extra?: string[]): Promise<{ certFile: string; keyFile: string; cert: string; key: string; serial: string }>;
  /** `count` one-time tokens for `template`. */
  tokens(template: string, count: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** The templates every device test uses. `short` certificates live 1 day, inside the 7-day renewal window at once. */
const TEMPLATES = [
  'provisioning:',
  '  renewal: { windowDays: 7, graceHours: 24, maxPerDay: 3 }',
  // A fleet from one claim within a minute (bastion device simulate): not Throttled here.
  '  ratePerMinute: 1000',
  '  templates:',
  '    sensor:',
  '      commonName: "sensor-${serialNumber}"',
  '      roles: [sensor]',
  '      days: 30',
  '      parameters:',
  '        serialNumber: { pattern: "[A-Z0-9-]{3,32}" }',
  '      deviceConfiguration: { interval: 30, unit: C, telemetry: true }',
  '    short:',
  '      commonName: "short-${serialNumber}"',
  '      roles: [sensor]',
  '      days: 1',
  '      parameters:',
  '        serialNumber: { pattern: "[A-Z0-9-]{3,32}" }',
  '    listed:',
  '      commonName: "listed-${serialNumber}"',
  '      roles: [sensor]',
  '      parameters:',
  '        serialNumber: { pattern: "[A-Z0-9-]{3,32}" }',
  '      allowSerials: [OK-1, OK-2]',
];

export interface DeviceBrokerOptions {
  /**
   * The broker's `limits` section (written as JSON, which YAML reads), e.g. per-address
   * connection limits raised for a fleet that connects from 127.0.0.1. Default: none (the
   * config defaults).
   */
  limits?: Record<string, unknown>;
}

export async function startDeviceBroker(opts: DeviceBrokerOptions = {}): Promise<DeviceBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-device-'));
  const dataDir = join(dir, 'data');
  const pki = await ensureDevPki(dataDir);
  const configFile = join(dir, 'bastion.yaml');
  writeFileSync(
    configFile,
    [
      `dataDir: ${JSON.stringify(dataDir)}`,
      'listeners:',
      '  - name: devices',
      '    protocol: mqtts',
      '    host: 127.0.0.1',
      '    port: 0',
      `    tls: { cert: ${JSON.stringify(pki.serverCert)}, key: ${JSON.stringify(pki.serverKey)}, ca: ${JSON.stringify(pki.caChain)}, clientCerts: optional }`,
      '    auth: { providers: [certificate, provision-token] }',
      'persistence: { enabled: false }',
      'log: { level: silent }',
      ...(opts.limits !== undefined ? [`limits: ${JSON.stringify(opts.limits)}`] : []),
      // Provisioning binds a device to its template's roles; `sensor` may use its own topics.
      'authz:',
      '  roles:',
      '    sensor: { rules: [{ effect: allow, action: all, topic: "devices/${cert.cn}/#" }] }',
      '    observer: { rules: [{ effect: allow, action: subscribe, topic: "devices/#" }] }',
      `  bindings: [{ role: observer, attribute: cert.cn, value: ${DEV_DEVICE_COMMON_NAME} }]`,
      ...TEMPLATES,
      '',
    ].join('\n'),
  );
  const { config, baseDir } = loadConfigFile(configFile);
  // BASTION_TEST_LOG=1 shows the broker's warnings and errors (why a request failed).
  const logger: Logger | undefined =
    process.env.BASTION_TEST_LOG === '1'
      ? {
          debug: () => undefined,
          info: () => undefined,
          warn: (obj, msg) => process.stderr.write(`broker warn: ${msg ?? ''} ${JSON.stringify(obj)}\n`),
          error: (obj, msg) => process.stderr.write(`broker error: ${msg ?? ''} ${JSON.stringify(obj)}\n`),
        }
      : undefined;
  const server = await startServer({ config, baseDir, ...(logger !== undefined ? { logger } : {}) });
  const port = server.listeners[0]!.port;
  const env = { ...process.env, BASTION_ROOT_KEY_PASSPHRASE: '' };
  const bastion = (args: string[], withConfig = true): Promise<ProcResult> =>
    run(process.execPath, [BASTION_MAIN, ...args, ...(withConfig ? ['-c', configFile] : [])], { timeoutMs: 60_000, env });
  let claims = 0;
  return {
    server,
    url: `mqtts://127.0.0.1:${port}`,
    port,
    caPem: readFileSync(pki.rootCert, 'utf8'),
    caFile: pki.rootCert,
    dir,
    dataDir,
    configFile,
    observer: { identity: pki.clientCommonName, certPem: readFileSync(pki.clientCert, 'utf8'), keyPem: readFileSync(pki.clientKey, 'utf8') },
    bastion,
    async claim(template, extra = []) {
      const out = join(dir, `claim-${++claims}`);
      const r = await bastion(['cert', 'issue', '--profile', 'claim', '--template', template, '--out', out, ...extra]);
      assert.equal(r.code, 0, `bastion cert issue --profile claim failed:\n${r.stderr}`);
      const field = (name: string): string => {
        const m = new RegExp(`^\\s+${name}:\\s+(.+)$`, 'm').exec(r.stdout);
        assert.ok(m !== null, `no ${name} in: ${r.stdout}`);
        return m[1]!.trim();
      };
      const certFile = field('certificate');
      const keyFile = field('key');
      return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), serial: field('serial') };
    },
    async tokens(template, count) {
      const r = await bastion(['provision', 'token', 'create', '--template', template, '--count', String(count)]);
      assert.equal(r.code, 0, `bastion provision token create failed:\n${r.stderr}`);
      const tokens = r.stdout.split('\n').filter((l) => l.startsWith('bpt_'));
      assert.equal(tokens.length, count, r.stdout);
      return tokens;
    },
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
