/**
 * The command line does what it is told (issue 11, part 9), with the real CLI as child
 * processes: an explicit --data-dir beats an exported BASTION_ADMIN_URL (the README's own
 * sequence), each command's --help names its target, errors name the flags of the command
 * that failed (acl's --admin-cert/--admin-key, the variable a URL came from), `--version`
 * prints the package version, and admin commands print lines, not JSON log records.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, freePort, REPO_ROOT, run, type ProcResult } from './support.js';

let dir: string;
/** An admin URL where nothing listens: any command that goes there fails with "not reachable". */
let deadUrl: string;

function bastion(args: string[], env: Record<string, string> = {}, input = ''): Promise<ProcResult> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BASTION_ADMIN_')));
  return run(process.execPath, [BASTION_MAIN, ...args], { env: { ...clean, ...env }, input, cwd: dir });
}

function assertOneLineFailure(r: ProcResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got: ${r.stdout}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cli-target-'));
  deadUrl = `https://127.0.0.1:${await freePort()}`;
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('bastion --version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = await bastion(['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${version}\n`);
});

describe('an explicit flag beats BASTION_ADMIN_URL', () => {
  test('user add/list/del --data-dir work on the data dir with BASTION_ADMIN_URL exported; without a flag the variable still picks the API', async () => {
    const env = { BASTION_ADMIN_URL: deadUrl };
    const added = await bastion(['user', 'add', 'alice', '--password-stdin', '--data-dir', 'data'], env, 'correct horse battery staple\n');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, 'added user alice\n');
    const listed = await bastion(['user', 'list', '--data-dir', 'data'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^alice\t\d{4}-/);
    const deleted = await bastion(['user', 'del', 'alice', '--data-dir', 'data'], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assertOneLineFailure(await bastion(['user', 'list'], env), /^bastion: admin API not reachable at https:\/\/127\.0\.0\.1:\d+ /);
  });

  test('acl lint --data-dir and acl explain --data-dir answer locally with BASTION_ADMIN_URL exported', async () => {
    const env = { BASTION_ADMIN_URL: deadUrl };
    const lint = await bastion(['acl', 'lint', '--data-dir', 'data'], env);
    assert.equal(lint.code, 0, lint.stderr);
    const explained = await bastion(['acl', 'explain', '--data-dir', 'data', '--client-id', 'd1', '--publish', 'devices/d1/x'], env);
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(explained.stdout, /deny/i);
  });

  test('--admin-url together with --data-dir is refused with one line naming both', async () => {
    assertOneLineFailure(await bastion(['user', 'list', '--admin-url', deadUrl, '--data-dir', 'data']), /^bastion: --admin-url and --data-dir name two targets/);
    assertOneLineFailure(await bastion(['acl', 'lint', '--admin-url', deadUrl, '--data-dir', 'data']), /^bastion: --admin-url and --data-dir name two targets/);
  });
});

describe('--help names the target', () => {
  test('user and acl lint: data dir or admin API, and which flag or variable picks it; clients: the API; acl role: local only', async () => {
    for (const args of [['user', 'list'], ['user', 'add'], ['acl', 'lint'], ['acl', 'explain']]) {
      const r = await bastion([...args, '--help']);
      assert.equal(r.code, 0, r.stderr);
      const text = r.stdout.replace(/\s+/g, ' ');
      assert.match(text, /Target: the data directory on this machine \(--data-dir/, args.join(' '));
      assert.match(text, /--admin-url is given or BASTION_ADMIN_URL is set/, args.join(' '));
      assert.match(text, /--data-dir or -c works locally even with BASTION_ADMIN_URL set/, args.join(' '));
    }
    const clients = await bastion(['clients', 'list', '--help']);
    assert.match(clients.stdout.replace(/\s+/g, ' '), /Target: the admin API of a running broker, named by --admin-url or BASTION_ADMIN_URL/);
    const role = await bastion(['acl', 'role', 'list', '--help']);
    assert.match(role.stdout.replace(/\s+/g, ' '), /Target: the rule store authz\.db in the data directory on this machine .*BASTION_ADMIN_URL is not used/);
  });
});

describe('errors name the flags of the command that failed', () => {
  let broker: TestBroker;
  let url: string;
  before(async () => {
    broker = await startTestBroker({ clients: ['client1'], admin: {} });
    url = `https://127.0.0.1:${broker.server.admin!.port}`;
  });
  after(async () => broker.stop());

  test('acl: --admin-cert without --admin-key, and a 401, name --admin-cert/--admin-key (its --cert is the client to explain)', async () => {
    const c = broker.pki.clients.client1!;
    assertOneLineFailure(await bastion(['acl', 'lint', '--admin-url', url, '--cafile', broker.pki.caCert, '--admin-cert', c.cert]), /^bastion: --admin-cert and --admin-key go together/);
    assertOneLineFailure(await bastion(['acl', 'lint', '--admin-url', url, '--cafile', broker.pki.caCert]), /^bastion: not authenticated: .*--admin-cert\/--admin-key of an operator\)$/);
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', url, '--cafile', broker.pki.caCert, '--cert', c.cert]), /^bastion: --cert and --key go together/);
  });

  test('a bad URL from the environment names BASTION_ADMIN_URL, not a flag that was never given', async () => {
    assertOneLineFailure(await bastion(['clients', 'list'], { BASTION_ADMIN_URL: url.replace('https:', 'http:') }), /^bastion: BASTION_ADMIN_URL must be https:\/\//);
    assertOneLineFailure(await bastion(['clients', 'list', '--admin-url', 'nonsense']), /^bastion: --admin-url nonsense is not a URL/);
  });
});

test('admin token create/revoke print lines a person reads, not JSON log records', async () => {
  const created = await bastion(['admin', 'token', 'create', '--name', 'ops', '--data-dir', 'data']);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /^bst_\S+\n$/);
  const revoked = await bastion(['admin', 'token', 'revoke', 'ops', '--data-dir', 'data']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(revoked.stdout, 'revoked ops\n');
  for (const r of [created, revoked]) {
    for (const line of r.stderr.split('\n').filter((l) => l !== '')) assert.doesNotMatch(line, /^\{/, `a JSON record on stderr: ${line}`);
  }
});
