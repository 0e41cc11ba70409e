/**
 * Defender audit, configuration, authorization and claim checks, and the report: each
 * builds the bad state (a config, a rule set, a claim record, real CRL files for the
 * loader) and sees its finding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAuditInput, readDebianBlacklist } from '../../src/cli/defender-input.js';
import { buildReport, formatReport, runAudit, type AuditInput } from '../../src/defender/audit/index.js';
import { anyAtOrAbove, sortFindings, type Finding } from '../../src/defender/audit/finding.js';
import { createCrl, createRootCa } from '../../src/pki/index.js';
import { cleanConfig, DAY, input, NOW } from './defender-audit-support.js';

const checksOf = (i: AuditInput): string[] => runAudit(i).map((f) => `${f.check}:${f.severity}:${f.subject}`);

test('a clean config (mTLS on loopback, default policy) has no finding', () => {
  assert.deepEqual(checksOf(input()), []);
});

test('a plaintext listener: high on the network, medium on loopback', () => {
  const config = cleanConfig({
    listeners: [
      { name: 'lan', protocol: 'mqtt', host: '0.0.0.0', port: 1883, insecure: true },
      { name: 'local-ws', protocol: 'ws', host: '127.0.0.1', port: 8080, insecure: true },
    ],
  });
  assert.deepEqual(checksOf(input({ config })).sort(), ['plaintext-listener:high:lan', 'plaintext-listener:medium:local-ws']);
});

test('an anonymous listener is high', () => {
  const config = cleanConfig({ listeners: [{ name: 'open', protocol: 'mqtts', host: '0.0.0.0', port: 8883, tls: { cert: 'a', key: 'b', clientCerts: 'none' }, allowAnonymous: true }] });
  assert.deepEqual(checksOf(input({ config })), ['anonymous-listener:high:open']);
});

test('logging off is low; limits off is high; allow-all is critical', () => {
  assert.deepEqual(checksOf(input({ config: cleanConfig({ log: { level: 'silent' } }) })), ['logging-disabled:low:log.level']);
  assert.deepEqual(checksOf(input({ config: cleanConfig({ limits: { enabled: false } }) })), ['limits-disabled:high:limits.enabled']);
  const allowAll = cleanConfig({ authz: { policy: 'allow-all-INSECURE' } });
  assert.ok(checksOf(input({ config: allowAll })).includes('authz-allow-all:critical:authz.policy'));
});

test('the root key online is low (zero-config keeps it by design); a stale PKI CRL is high', () => {
  const pki = { dir: '/p', records: [], rootKeyOnline: true, crlNextUpdates: [new Date(NOW.getTime() - 1000)] };
  assert.deepEqual(checksOf(input({ pki })).sort(), ['crl-stale:high:/p/crl.pem', 'root-key-online:low:/p/root.key']);
});

test('overly permissive rules come from acl lint; a deny rule with wildcards is low', () => {
  const config = cleanConfig({
    authz: {
      roles: { fleet: { rules: [{ effect: 'allow', action: 'all', topic: '#' }, { effect: 'deny', action: 'publish', topic: 'devices/+/cmd' }] } },
      bindings: [{ role: 'fleet', attribute: 'cert.cn', value: '*' }],
    },
  });
  const findings = checksOf(input({ config, policy: { roles: [{ name: 'fleet', source: 'config', rules: config.authz!.roles['fleet']!.rules }], bindings: config.authz!.bindings } }));
  assert.ok(findings.includes('acl-overly-permissive:critical:role fleet rule #0 (allow all #)'), findings.join('\n'));
  assert.ok(findings.includes('acl-deny-wildcard:low:role fleet rule #1 (deny publish devices/+/cmd)'), findings.join('\n'));
});

test("acl lint's other findings map to acl-lint: a role bound to nobody is low, a binding to an unknown role medium", () => {
  const policy = {
    roles: [{ name: 'orphan', source: 'store' as const, rules: [{ effect: 'allow' as const, action: 'subscribe' as const, topic: 'broadcast/#' }] }],
    bindings: [{ role: 'ghost', attribute: 'clientId' as const, value: 'x' }],
  };
  assert.deepEqual(checksOf(input({ policy })).sort(), ['acl-lint:low:role orphan', 'acl-lint:medium:role ghost']);
});

test('claims: ≥ 90% of maxDevices is medium, expired and unrevoked is low, revoked ones are quiet', () => {
  const claim = (serialNumber: string, devices: number, maxDevices: number, expiresIn: number, revokedAt: number | null = null) => ({ serialNumber, template: 't', devices, maxDevices, expiresAt: NOW.getTime() + expiresIn, revokedAt });
  const claims = [claim('AA', 9, 10, DAY), claim('BB', 8, 10, DAY), claim('CC', 0, 0, -DAY), claim('DD', 10, 10, DAY, NOW.getTime()), claim('EE', 500, 0, DAY)];
  assert.deepEqual(checksOf(input({ claims })).sort(), ['claim-expired-unrevoked:low:CC', 'claim-over-used:medium:AA']);
});

test('the loader: an mTLS listener trusting a foreign CA with no CRL has no revocation source (high); a stale tls.crl is high', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'defender-audit-'));
  try {
    const ca = await createRootCa({ commonName: 'Foreign CA', now: new Date(Date.now() - 10 * DAY) });
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    await writeFile(join(dir, 'old.crl'), await createCrl({ ca, entries: [], crlNumber: 1n, thisUpdate: new Date(Date.now() - 5 * DAY), nextUpdate: new Date(Date.now() - DAY) }));
    await writeFile(join(dir, 'bad.crl'), 'not a crl');
    await writeFile(
      join(dir, 'bastion.yaml'),
      [
        `dataDir: ${join(dir, 'data')}`,
        'listeners:',
        '  - { name: norev, protocol: mqtts, port: 8883, tls: { cert: c.pem, key: k.pem, ca: ca.pem, clientCerts: required } }',
        '  - { name: stale, protocol: mqtts, port: 8884, tls: { cert: c.pem, key: k.pem, ca: ca.pem, crl: old.crl, clientCerts: required } }',
        '  - { name: broken, protocol: mqtts, port: 8885, tls: { cert: c.pem, key: k.pem, ca: ca.pem, crl: bad.crl, clientCerts: required } }',
        '',
      ].join('\n'),
    );
    const loaded = await loadAuditInput({ config: join(dir, 'bastion.yaml') }, new Date(), join(dir, 'no-blacklist'));
    assert.equal(loaded.pki, undefined, 'no PKI in the data dir: absent, not an error');
    assert.equal(loaded.claims, undefined);
    assert.deepEqual(runAudit(loaded).map((f) => `${f.check}:${f.severity}:${f.subject}`).sort(), ['crl-stale:high:stale', 'crl-unreadable:high:broken', 'mtls-listener-no-revocation:high:norev']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the Debian blacklist reader takes blacklist.RSA-<bits> files of 20-hex-digit lines, ignoring comments', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'defender-blacklist-'));
  try {
    await writeFile(join(dir, 'blacklist.RSA-2048'), '# comment\n0123456789ABCDEF0123\nnot-hex\n');
    await writeFile(join(dir, 'README'), 'x');
    const lists = readDebianBlacklist(dir);
    assert.deepEqual([...lists!.entries()].map(([k, v]) => [k, [...v]]), [[2048, ['0123456789abcdef0123']]]);
    assert.equal(readDebianBlacklist(join(dir, 'none')), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the report: most severe first, counts, a fix line under each finding; --fail-on compares severities', () => {
  const findings = runAudit(input({ config: cleanConfig({ log: { level: 'silent' }, limits: { enabled: false } }) }));
  const report = buildReport(findings, NOW);
  assert.deepEqual(report.counts, { low: 1, medium: 0, high: 1, critical: 0 });
  assert.equal(report.checkedAt, NOW.toISOString());
  const lines = formatReport(report).split('\n');
  assert.match(lines[0]!, /^HIGH +limits-disabled  limits\.enabled: /);
  assert.match(lines[1]!, /^ +fix: remove limits\.enabled: false/);
  assert.match(lines[2]!, /^LOW +logging-disabled/);
  assert.match(lines[4]!, /^2 finding\(s\): 0 critical, 1 high, 0 medium, 1 low/);
  assert.equal(anyAtOrAbove(findings, 'high'), true);
  assert.equal(anyAtOrAbove(findings, 'critical'), false);
  assert.match(formatReport(buildReport([], NOW)), /^no findings/);
});

test('findings sort most severe first, then by check and subject in code-unit order (no locale collation)', () => {
  const f = (severity: Finding['severity'], check: string, subject: string): Finding => ({ check, severity, subject, message: '', fix: '' });
  const sorted = sortFindings([f('low', 'a-check', 'x'), f('high', 'b-check', 'zeta'), f('high', 'b-check', 'Zeta'), f('high', 'B-check', 'a'), f('medium', 'a-check', 'y')]);
  // Code units put upper case before lower case ('B' 0x42 < 'b' 0x62, 'Z' < 'z'); a locale
  // collation would put "b-check" and "zeta" first.
  assert.deepEqual(
    sorted.map((x) => `${x.severity} ${x.check} ${x.subject}`),
    ['high B-check a', 'high b-check Zeta', 'high b-check zeta', 'medium a-check y', 'low a-check x'],
  );
});
