/**
 * `bastion cert issue --profile claim` and `bastion provision token|claim|device` run as
 * the installed command (child processes of the built CLI) on a real data directory: the
 * claim certificate (OU bastion-claim, checked by OpenSSL) recorded in provisioning.db with
 * its device limit, refusals on one line (unknown template, bad --ttl/--count/--max-devices,
 * unknown ids and serials), tokens printed once and stored only hashed, revocation of
 * tokens and of claims (the claim's certificate revoked in the PKI too), device listing,
 * and every change recorded for the broker's audit log.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../../src/provisioning/sqlite-provisioning-store.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

const execFileP = promisify(execFile);
const DAY = 86_400_000;
const TOKEN_LINE = /^bpt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

let root: string;
let data: string;
let config: string;
before(async () => {
  root = mkdtempSync(join(tmpdir(), 'bastion-provision-cli-'));
  data = join(root, 'data');
  config = join(root, 'bastion.yaml');
  writeFileSync(
    config,
    [
      `dataDir: ${JSON.stringify(data)}`,
      'listeners:',
      '  - { name: plain, protocol: mqtt, port: 0, insecure: true, allowAnonymous: true }',
      'provisioning:',
      '  templates:',
      '    sensor:',
      '      commonName: "sensor-${serialNumber}"',
      '      roles: [sensor]',
      '      parameters:',
      '        serialNumber: { pattern: "[A-Z0-9]{6}" }',
      '    gateway:',
      '      commonName: "gw-${serialNumber}"',
      '      roles: [gateway]',
      '      parameters:',
      '        serialNumber: { pattern: "[A-Z0-9]{6}" }',
      '',
    ].join('\n'),
  );
  for (const args of [['ca', 'init', '--cn', 'Provisioning Test Root'], ['ca', 'intermediate', '--cn', 'Provisioning Test Issuing CA']]) {
    const r = await bastion([...args, '--data-dir', data]);
    assert.equal(r.code, 0, r.stderr);
  }
});
after(() => rmSync(root, { recursive: true, force: true }));

function bastion(args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, ...args], { timeoutMs: 20_000, env: { ...process.env, BASTION_ROOT_KEY_PASSPHRASE: '' } });
}

/** The command with -c CONFIG appended. */
function withConfig(args: string[]): Promise<ProcResult> {
  return bastion([...args, '-c', config]);
}

/** Asserts a failure that is exactly one readable stderr line matching `re`. */
function assertOneLineFailure(r: ProcResult, re: RegExp): void {
  assert.notEqual(r.code, 0, `expected failure; stdout: ${r.stdout}`);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `exactly one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^bastion: /);
  assert.match(lines[0]!, re);
}

async function openssl(...args: string[]): Promise<string> {
  const { stdout } = await execFileP('/usr/bin/openssl', args);
  return stdout;
}

function field(stdout: string, name: string): string {
  const m = new RegExp(`^\\s+${name}:\\s+(.+)$`, 'm').exec(stdout);
  assert.ok(m !== null, `no ${name} in: ${stdout}`);
  return m[1]!;
}

async function json<T>(args: string[]): Promise<T> {
  const r = await withConfig([...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/** `bastion cert list --json` (the PKI commands take --data-dir, not -c). */
async function certList<T>(...args: string[]): Promise<T> {
  const r = await bastion(['cert', 'list', '--json', '--data-dir', data, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

function withStore<T>(fn: (store: SqliteProvisioningStore) => T): T {
  const store = SqliteProvisioningStore.open(join(data, PROVISIONING_DB_FILE));
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

/** Every byte of provisioning.db and its WAL. */
function dbBytes(): Buffer {
  return Buffer.concat(readdirSync(data).filter((f) => f.startsWith(PROVISIONING_DB_FILE)).map((f) => readFileSync(join(data, f))));
}

interface ClaimJson {
  serialNumber: string;
  template: string;
  status: string;
  devices: number;
  maxDevices: number;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
}
interface TokenJson {
  id: string;
  template: string;
  status: string;
  expiresAt: string;
  usedBy: string | null;
  revokedAt: string | null;
}

describe('bastion cert issue --profile claim / provision claim', () => {
  let claimSerial = '';

  test('issues a claim certificate: OU bastion-claim, CN claim-<template>-<hex>, recorded with its device limit and expiry', async () => {
    const out = join(root, 'claims');
    const started = Date.now();
    const r = await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'sensor', '--max-devices', '5', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    claimSerial = field(r.stdout, 'serial');
    assert.match(r.stdout, /^Issued claim certificate claim-sensor-[0-9a-f]{8} for template sensor$/m);
    assert.equal(field(r.stdout, 'template'), 'sensor');
    assert.equal(field(r.stdout, 'max devices'), '5');
    const certPath = field(r.stdout, 'certificate');
    assert.ok(certPath.startsWith(out));

    const subject = await openssl('x509', '-in', certPath, '-noout', '-subject', '-enddate');
    assert.match(subject, /OU\s*=\s*bastion-claim/);
    assert.match(subject, /CN\s*=\s*claim-sensor-[0-9a-f]{8}/);
    const verify = await openssl('verify', '-CAfile', join(data, 'pki', 'root.crt'), '-untrusted', join(data, 'pki', 'intermediate.crt'), '-purpose', 'sslclient', certPath);
    assert.match(verify, /OK/);

    const claims = await json<ClaimJson[]>(['provision', 'claim', 'list']);
    assert.equal(claims.length, 1);
    assert.deepEqual({ ...claims[0]!, expiresAt: undefined }, { serialNumber: claimSerial, template: 'sensor', status: 'active', devices: 0, maxDevices: 5, expiresAt: undefined, revokedAt: null, createdAt: claims[0]!.createdAt });
    const notAfter = Date.parse(/notAfter=(.+)/.exec(subject)![1]!);
    assert.equal(Date.parse(claims[0]!.expiresAt), notAfter, 'the claim expires with its certificate');
    assert.ok(Math.abs(notAfter - (started + 365 * DAY)) < 2 * DAY, 'default --days 365');

    const listed = await certList<Array<{ serialNumber: string; kind: string; status: string }>>();
    assert.ok(listed.some((c) => c.serialNumber === claimSerial && c.kind === 'client' && c.status === 'valid'));
    const table = await withConfig(['provision', 'claim', 'list']);
    assert.match(table.stdout, new RegExp(`^${claimSerial}\\s+sensor\\s+0/5\\s+active`, 'm'));
  });

  test('--max-devices defaults to unlimited; --days is honoured', async () => {
    const r = await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'gateway', '--days', '10', '--out', join(root, 'claims2')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(field(r.stdout, 'max devices'), 'unlimited');
    const serial = field(r.stdout, 'serial');
    const claim = withStore((s) => s.claim(serial));
    assert.equal(claim?.maxDevices, 0);
    assert.ok(Math.abs(claim!.expiresAt - (Date.now() + 10 * DAY)) < 2 * DAY);
  });

  test('refusals are one line, and issue nothing: unknown template (naming the known ones), no config, --cn, bad --max-devices', async () => {
    const before = (await json<ClaimJson[]>(['provision', 'claim', 'list'])).length;
    const certsBefore = (await certList<unknown[]>()).length;
    const unknown = await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'thermostat']);
    assertOneLineFailure(unknown, /unknown template "thermostat"; the config has: gateway, sensor/);
    assertOneLineFailure(await bastion(['cert', 'issue', '--profile', 'claim', '--template', 'sensor', '--data-dir', data]), /unknown template "sensor": no config given; pass -c CONFIG/);
    assertOneLineFailure(await withConfig(['cert', 'issue', '--profile', 'claim']), /--template is required/);
    assertOneLineFailure(await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'sensor', '--cn', 'mine']), /drop --cn/);
    assertOneLineFailure(await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'sensor', '--max-devices', '-1']), /--max-devices must be a whole number/);
    assertOneLineFailure(await withConfig(['cert', 'issue', '--profile', 'claim', '--template', 'sensor', '--max-devices', 'lots']), /--max-devices must be a whole number/);
    assertOneLineFailure(await bastion(['cert', 'issue', '--profile', 'client', '--cn', 'x', '--template', 'sensor', '--data-dir', data]), /go with --profile claim/);
    assertOneLineFailure(await bastion(['cert', 'issue', '--profile', 'client', '--data-dir', data]), /--cn is required/);
    assert.equal((await json<ClaimJson[]>(['provision', 'claim', 'list'])).length, before);
    assert.equal((await certList<unknown[]>()).length, certsBefore);
  });

  test('claim revoke: marked revoked in provisioning.db and revoked in the PKI (cessationOfOperation); again changes nothing; unknown is one line', async () => {
    assert.notEqual(claimSerial, '');
    const r = await withConfig(['provision', 'claim', 'revoke', claimSerial]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Revoked claim ${claimSerial} \\(template sensor, 0 device\\(s\\) provisioned\\); certificate revoked \\(cessationOfOperation\\), CRL re-signed`));
    const revoked = await certList<Array<{ serialNumber: string; reason: string }>>('--status', 'revoked');
    assert.deepEqual(revoked.map((c) => [c.serialNumber, c.reason]), [[claimSerial, 'cessationOfOperation']]);
    const claim = (await json<ClaimJson[]>(['provision', 'claim', 'list'])).find((c) => c.serialNumber === claimSerial);
    assert.equal(claim?.status, 'revoked');
    assert.notEqual(claim?.revokedAt, null);
    assert.equal(withStore((s) => s.takeClaimSlot(claimSerial)), false, 'a revoked claim provisions nothing');
    const crl = await openssl('crl', '-in', join(data, 'pki', 'crl.pem'), '-noout', '-text');
    assert.match(crl, new RegExp(`Serial Number: ${claimSerial}[\\s\\S]*?Cessation Of Operation`, 'i'));

    const again = await withConfig(['provision', 'claim', 'revoke', claimSerial.toLowerCase()]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /was already revoked at .*; nothing changed/);
    assertOneLineFailure(await withConfig(['provision', 'claim', 'revoke', 'DEADBEEF']), /no claim certificate with serial DEADBEEF/);
    assertOneLineFailure(await withConfig(['provision', 'claim', 'revoke', 'not-hex']), /a serial number is hex/);
  });
});

describe('bastion provision token', () => {
  const created: Array<{ id: string; secret: string }> = [];

  test('create prints one token per line on stdout and a summary on stderr; they are stored only hashed', async () => {
    const started = Date.now();
    const r = await withConfig(['provision', 'token', 'create', '--template', 'sensor', '--count', '3', '--ttl', '1h']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 3);
    for (const line of lines) {
      const m = TOKEN_LINE.exec(line);
      assert.ok(m !== null, line);
      created.push({ id: m[1]!, secret: m[2]! });
    }
    assert.equal(new Set(created.map((t) => t.id)).size, 3);
    assert.match(r.stderr, /^bastion: created 3 one-time token\(s\) for template sensor, valid until \S+; they are shown only now\n$/);

    const bytes = dbBytes();
    for (const t of created) {
      assert.equal(bytes.includes(Buffer.from(t.secret)), false, 'no secret in provisioning.db');
      assert.equal(bytes.includes(Buffer.from(`bpt_${t.id}_${t.secret}`)), false);
    }
    const stored = withStore((s) => s.token(created[0]!.id));
    assert.equal(stored?.template, 'sensor');
    assert.ok(Math.abs(stored!.expiresAt - (started + 3_600_000)) < 60_000);
  });

  test('create --json; list (table and JSON) shows ids, template, status, never a secret', async () => {
    const made = await json<{ template: string; expiresAt: string; tokens: Array<{ id: string; token: string }> }>(['provision', 'token', 'create', '--template', 'gateway', '--ttl', '30d']);
    assert.equal(made.template, 'gateway');
    assert.equal(made.tokens.length, 1);
    assert.match(made.tokens[0]!.token, TOKEN_LINE);
    assert.ok(made.tokens[0]!.token.includes(made.tokens[0]!.id));
    assert.ok(Math.abs(Date.parse(made.expiresAt) - (Date.now() + 30 * DAY)) < 60_000);

    const list = await json<TokenJson[]>(['provision', 'token', 'list']);
    assert.deepEqual(list.map((t) => [t.id, t.template, t.status]), [...created.map((t) => [t.id, 'sensor', 'unused']), [made.tokens[0]!.id, 'gateway', 'unused']]);
    const table = await withConfig(['provision', 'token', 'list']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+TEMPLATE\s+STATUS\s+CREATED\s+EXPIRES\s+USED BY$/m);
    for (const t of created) {
      assert.match(table.stdout, new RegExp(`^${t.id}\\s+sensor\\s+unused\\s`, 'm'));
      assert.equal(table.stdout.includes(t.secret), false);
    }
    const secret = made.tokens[0]!.token.slice(-43);
    assert.equal(JSON.stringify(list).includes(secret), false);
  });

  test('revoke by id or whole token; again changes nothing; a used token is not revoked; unknown and malformed ids are one line', async () => {
    const [a, b, c] = created;
    const r = await withConfig(['provision', 'token', 'revoke', a!.id]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `revoked token ${a!.id} (template sensor)\n`);
    const byToken = await withConfig(['provision', 'token', 'revoke', `bpt_${b!.id}_${b!.secret}`]);
    assert.equal(byToken.code, 0, byToken.stderr);
    const again = await withConfig(['provision', 'token', 'revoke', a!.id]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already revoked at .*; nothing changed/);

    const list = await json<TokenJson[]>(['provision', 'token', 'list']);
    const status = new Map(list.map((t) => [t.id, t]));
    assert.equal(status.get(a!.id)?.status, 'revoked');
    assert.equal(status.get(b!.id)?.status, 'revoked');
    assert.equal(status.get(c!.id)?.status, 'unused');
    assert.equal(withStore((s) => s.spendToken(a!.id, 'sensor-X', Date.now())), false, 'a revoked token cannot be spent');

    assert.equal(withStore((s) => s.spendToken(c!.id, 'sensor-ABC123', Date.now())), true);
    assertOneLineFailure(await withConfig(['provision', 'token', 'revoke', c!.id]), new RegExp(`token ${c!.id} was used by sensor-ABC123`));
    const used = (await json<TokenJson[]>(['provision', 'token', 'list'])).find((t) => t.id === c!.id);
    assert.deepEqual([used?.status, used?.usedBy], ['used', 'sensor-ABC123']);

    assertOneLineFailure(await withConfig(['provision', 'token', 'revoke', '0123456789ab']), /no token 0123456789ab/);
    assertOneLineFailure(await withConfig(['provision', 'token', 'revoke', 'nope']), /a token id is 12 hex characters/);
  });

  test('--ttl, --count and --template errors are one line and create nothing', async () => {
    const before = (await json<TokenJson[]>(['provision', 'token', 'list'])).length;
    const create = (...args: string[]): Promise<ProcResult> => withConfig(['provision', 'token', 'create', '--template', 'sensor', ...args]);
    for (const ttl of ['10', '1w', '1.5h', 'h', '-1h', ' 1h', '1H']) assertOneLineFailure(await create('--ttl', ttl), /--ttl takes a number and a unit s, m, h or d/);
    assertOneLineFailure(await create('--ttl', '0s'), /--ttl must be more than 0/);
    for (const ttl of ['31d', '721h', '2592001s']) assertOneLineFailure(await create('--ttl', ttl), /--ttl is at most 30d/);
    for (const count of ['0', '10001', 'x', '-3', '2.5']) assertOneLineFailure(await create('--count', count), /--count must be a whole number from 1 to 10000/);
    assertOneLineFailure(await withConfig(['provision', 'token', 'create', '--template', 'nope']), /unknown template "nope"; the config has: gateway, sensor/);
    assert.equal((await json<TokenJson[]>(['provision', 'token', 'list'])).length, before);
    const edge = await create('--ttl', '2592000s', '--count', '2');
    assert.equal(edge.code, 0, edge.stderr);
    assert.equal(edge.stdout.split('\n').filter((l) => TOKEN_LINE.test(l)).length, 2);
  });
});

describe('bastion provision device list, lists on an empty data directory, the audit trail', () => {
  test('device list shows what provisioning recorded (table and JSON)', async () => {
    withStore((s) => {
      s.putDevice({ identity: 'sensor-ABC123', template: 'sensor', certSerial: '0A0B0C', notAfter: Date.parse('2027-01-01T00:00:00Z'), claim: { kind: 'token', id: '0123456789ab' }, createdAt: Date.now() });
      s.putDevice({ identity: 'gw-XYZ999', template: 'gateway', certSerial: '0D0E0F', notAfter: Date.parse('2027-02-01T00:00:00Z'), claim: { kind: 'claim', serialNumber: 'ABCD' }, createdAt: Date.now() + 1 });
    });
    const table = await withConfig(['provision', 'device', 'list']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^IDENTITY\s+TEMPLATE\s+SERIAL\s+NOT AFTER\s+VIA$/m);
    assert.match(table.stdout, /^sensor-ABC123\s+sensor\s+0A0B0C\s+2027-01-01T00:00:00.000Z\s+token 0123456789ab$/m);
    assert.match(table.stdout, /^gw-XYZ999\s+gateway\s+0D0E0F\s+2027-02-01T00:00:00.000Z\s+claim ABCD$/m);
    const list = await json<Array<{ identity: string; via: Record<string, string> }>>(['provision', 'device', 'list']);
    assert.deepEqual(list.map((d) => [d.identity, d.via]), [['sensor-ABC123', { token: '0123456789ab' }], ['gw-XYZ999', { claim: 'ABCD' }]]);
  });

  test('lists on a data directory without provisioning.db print nothing and create nothing', async () => {
    const empty = join(root, 'empty-data');
    for (const what of ['token', 'claim', 'device']) {
      const r = await bastion(['provision', what, 'list', '--json', '--data-dir', empty]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), []);
    }
    assert.throws(() => readdirSync(empty), /ENOENT/);
  });

  test('every change and refusal is recorded for the audit log, without a secret', () => {
    const db = new Database(join(data, 'pending-changes.db'), { readonly: true });
    let rows: Array<{ action: string; target: string; outcome: string; detail: string | null }>;
    try {
      rows = db.prepare("SELECT action, target, outcome, detail FROM pending_changes WHERE action LIKE 'provision.%' ORDER BY rowid").all() as typeof rows;
    } finally {
      db.close();
    }
    const seen = new Set(rows.map((r) => `${r.action}:${r.outcome}`));
    for (const want of ['provision.claim.issue:ok', 'provision.claim.revoke:ok', 'provision.claim.revoke:not-found', 'provision.token.create:ok', 'provision.token.revoke:ok', 'provision.token.revoke:not-found', 'provision.token.revoke:conflict']) {
      assert.ok(seen.has(want), `${want} in ${[...seen].join(', ')}`);
    }
    const created = rows.find((r) => r.action === 'provision.token.create');
    assert.deepEqual(Object.keys(JSON.parse(created!.detail!) as object).sort(), ['count', 'expiresAt', 'ids', 'pid']);
    const text = JSON.stringify(rows);
    assert.equal(/bpt_/.test(text), false, 'no token text in the audit records');
  });
});
