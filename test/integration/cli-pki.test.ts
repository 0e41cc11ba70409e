/**
 * `bastion ca|cert|crl` run as the installed command (child processes of the built CLI):
 * every command's success path and its refusals (existing CA, missing CA, unknown
 * serial, root key offline, wrong passphrase, bad flags), with the results checked by
 * OpenSSL (`verify` with the chain and the CRLs, `crl -text`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

const execFileP = promisify(execFile);
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bastion-cli-pki-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function bastion(dataDir: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, ...args, '--data-dir', dataDir], {
    timeoutMs: 20_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    env: { ...process.env, BASTION_ROOT_KEY_PASSPHRASE: '', ...opts.env },
  });
}

/** Asserts a failure that is exactly one readable stderr line matching `re`. */
function assertOneLineFailure(r: ProcResult, re: RegExp): void {
  assert.notEqual(r.code, 0, `expected failure; stdout: ${r.stdout}`);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `exactly one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^bastion: /);
  assert.match(lines[0]!, re);
}

async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await execFileP('/usr/bin/openssl', args);
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function serialOf(stdout: string): string {
  const m = /serial:\s+([0-9A-F]+)/.exec(stdout);
  assert.ok(m !== null, `no serial in: ${stdout}`);
  return m[1]!;
}

describe('bastion ca / cert / crl with an intermediate', () => {
  let data: string;
  let pki: string;
  let deviceSerial: string;
  let deviceCert: string;

  before(async () => {
    data = join(tempDir(), 'data');
    pki = join(data, 'pki');
  });

  test('commands other than ca init say there is no CA yet', async () => {
    assertOneLineFailure(await bastion(data, ['cert', 'list']), /no CA in .*bastion ca init/);
    assertOneLineFailure(await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'x']), /no CA in /);
  });

  test('ca init creates the root (pathlen 1), private modes, the inventory and a root-signed CRL; a second init is refused', async () => {
    const r = await bastion(data, ['ca', 'init', '--cn', 'Test Root', '--key', 'ec-p384', '--days', '400']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Created root CA "Test Root"/);
    assert.equal(statSync(pki).mode & 0o777, 0o700);
    assert.equal(statSync(join(pki, 'root.key')).mode & 0o777, 0o600);
    const text = (await openssl('x509', '-in', join(pki, 'root.crt'), '-noout', '-text')).out;
    assert.match(text, /CA:TRUE, pathlen:1/);
    assert.match(text, /NIST CURVE: P-384|secp384r1/);
    assert.ok(existsSync(join(pki, 'inventory.db')));
    const crl = await openssl('crl', '-in', join(pki, 'crl.pem'), '-noout', '-CAfile', join(pki, 'root.crt'));
    assert.ok(crl.ok && /verify OK/.test(crl.out), crl.out);

    const again = await bastion(data, ['ca', 'init']);
    assertOneLineFailure(again, /a CA already exists/);
    assert.equal(again.code, 1);
  });

  test('bad flags are usage errors on one line', async () => {
    assertOneLineFailure(await bastion(data, ['ca', 'intermediate', '--cn', 'I', '--key', 'dsa-1024']), /--key must be one of/);
    assertOneLineFailure(await bastion(data, ['cert', 'issue', '--profile', 'admin', '--cn', 'x']), /--profile must be server or client/);
    assertOneLineFailure(await bastion(data, ['cert', 'issue', '--profile', 'server', '--cn', 'x', '--san', 'host.example']), /--san entries look like/);
    assertOneLineFailure(await bastion(data, ['cert', 'list', '--expiring-within', 'soon']), /duration like 30d/);
  });

  test('ca intermediate: signed by the root; from then on it issues, and certificates verify with the chain', async () => {
    const r = await bastion(data, ['ca', 'intermediate', '--cn', 'Test Issuing CA']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(join(pki, 'intermediate.key')).mode & 0o777, 0o600);
    const chain = readFileSync(join(pki, 'ca-chain.crt'), 'utf8');
    assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 2);
    assertOneLineFailure(await bastion(data, ['ca', 'intermediate', '--cn', 'Second']), /intermediate CA already exists/);

    const out = join(tempDir(), 'out');
    const issued = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'device-1', '--ou', 'sensors', '--san', 'URI:spiffe://bastion/device-1', '--out', out]);
    assert.equal(issued.code, 0, issued.stderr);
    deviceSerial = serialOf(issued.stdout);
    deviceCert = join(out, 'device-1.crt');
    assert.match(issued.stdout, /fingerprint: SHA256 [0-9A-F:]{95}/);
    assert.equal(statSync(join(out, 'device-1.key')).mode & 0o777, 0o600);
    assert.equal(readFileSync(deviceCert, 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 2, 'leaf + intermediate, no root');
    const v = await openssl('verify', '-CAfile', join(pki, 'root.crt'), '-untrusted', join(pki, 'intermediate.crt'), '-crl_check_all', '-CRLfile', join(pki, 'crl.pem'), '-purpose', 'sslclient', deviceCert);
    assert.ok(v.ok, v.out);
    const text = (await openssl('x509', '-in', deviceCert, '-noout', '-text')).out;
    assert.match(text, /Issuer: CN = Test Issuing CA/);
    assert.match(text, /OU = sensors/);
    assert.match(text, /URI:spiffe:\/\/bastion\/device-1/);

    const server = await bastion(data, ['cert', 'issue', '--profile', 'server', '--cn', 'broker.local', '--san', 'DNS:broker.local,IP:10.0.0.5', '--days', '30']);
    assert.equal(server.code, 0, server.stderr);
    const serverCert = join(pki, 'issued', 'broker.local.crt');
    const sv = await openssl('verify', '-CAfile', join(pki, 'root.crt'), '-untrusted', join(pki, 'intermediate.crt'), '-purpose', 'sslserver', serverCert);
    assert.ok(sv.ok, sv.out);
    assert.match((await openssl('x509', '-in', serverCert, '-noout', '-ext', 'subjectAltName')).out, /DNS:broker\.local, IP Address:10\.0\.0\.5/);

    assertOneLineFailure(await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'device-1', '--out', out]), /already exists; refusing to replace it/);
  });

  test('cert list and show, as a table and as JSON, with filters', async () => {
    const table = await bastion(data, ['cert', 'list']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SERIAL\s+STATUS\s+KIND\s+EXPIRES\s+COMMON NAME$/m);
    assert.match(table.stdout, new RegExp(`^${deviceSerial}\\s+valid\\s+client\\s+\\S+\\s+device-1$`, 'm'));
    const json = JSON.parse((await bastion(data, ['cert', 'list', '--json'])).stdout) as Array<{ kind: string; commonName: string }>;
    assert.deepEqual(json.map((c) => `${c.kind}:${c.commonName}`), ['root:Test Root', 'intermediate:Test Issuing CA', 'client:device-1', 'server:broker.local']);
    const soon = JSON.parse((await bastion(data, ['cert', 'list', '--json', '--expiring-within', '60d'])).stdout) as Array<{ commonName: string }>;
    assert.deepEqual(soon.map((c) => c.commonName), ['broker.local']);

    const show = await bastion(data, ['cert', 'show', deviceSerial.toLowerCase()]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /subject:\s+CN=device-1, OU=sensors|subject:\s+OU=sensors, CN=device-1|subject:\s+.*CN=device-1/);
    assert.match(show.stdout, /sans:\s+URI:spiffe:\/\/bastion\/device-1/);
    const shown = JSON.parse((await bastion(data, ['cert', 'show', deviceSerial, '--json'])).stdout) as { pem: string; status: string };
    assert.equal(shown.status, 'valid');
    assert.equal(shown.pem, readFileSync(deviceCert, 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
    assertOneLineFailure(await bastion(data, ['cert', 'show', 'ABCDEF']), /no certificate with serial ABCDEF/);
  });

  test('ca show, ca set-ocsp-url (and --clear), cert issue --ocsp-url; a non-http URL is refused', async () => {
    const show = await bastion(data, ['ca', 'show']);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /root\s+: Test Root \(serial [0-9A-F]+, valid/);
    assert.match(show.stdout, /intermediate: Test Issuing CA/);
    assert.match(show.stdout, /ocsp url\s+: none/);
    assertOneLineFailure(await bastion(data, ['ca', 'set-ocsp-url', 'ftp://x/']), /OCSP URL must be http or https/);
    assertOneLineFailure(await bastion(data, ['ca', 'set-ocsp-url']), /either a URL or --clear/);
    assert.equal((await bastion(data, ['ca', 'set-ocsp-url', 'http://ocsp.example:8888/'])).code, 0);
    assert.match((await bastion(data, ['ca', 'show'])).stdout, /ocsp url\s+: http:\/\/ocsp\.example:8888\//);
    assert.equal((await bastion(data, ['ca', 'set-ocsp-url', '--clear'])).code, 0);

    const out = tempDir();
    const r = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'with-aia', '--ocsp-url', 'http://127.0.0.1:9999/', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await openssl('x509', '-in', join(out, 'with-aia.crt'), '-noout', '-ext', 'authorityInfoAccess')).out, /OCSP - URI:http:\/\/127\.0\.0\.1:9999\//);
    const plain = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'without-aia', '--out', out]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch((await openssl('x509', '-in', join(out, 'without-aia.crt'), '-noout', '-text')).out, /OCSP - URI/);
  });

  test('cert revoke: re-signs crl.pem at once (OpenSSL then refuses the certificate); unknown serial and repeat are clear', async () => {
    const before = readFileSync(join(pki, 'crl.pem'), 'utf8');
    assertOneLineFailure(await bastion(data, ['cert', 'revoke', 'DEADBEEF']), /no certificate with serial DEADBEEF/);
    assertOneLineFailure(await bastion(data, ['cert', 'revoke', deviceSerial, '--reason', 'stolen']), /--reason must be one of/);
    const r = await bastion(data, ['cert', 'revoke', '--cert', deviceCert, '--reason', 'keyCompromise']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Revoked ${deviceSerial} \\(device-1\\), reason keyCompromise`));
    const crl = readFileSync(join(pki, 'crl.pem'), 'utf8');
    assert.notEqual(crl, before);
    assert.equal(crl.match(/BEGIN X509 CRL/g)?.length, 2, 'intermediate CRL + root CRL');
    const v = await openssl('verify', '-CAfile', join(pki, 'root.crt'), '-untrusted', join(pki, 'intermediate.crt'), '-crl_check_all', '-CRLfile', join(pki, 'crl.pem'), deviceCert);
    assert.equal(v.ok, false);
    assert.match(v.out, /certificate revoked/);

    const again = await bastion(data, ['cert', 'revoke', deviceSerial]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already revoked .*nothing changed/);
    const revoked = JSON.parse((await bastion(data, ['cert', 'list', '--status', 'revoked', '--json'])).stdout) as Array<{ serialNumber: string; reason: string }>;
    assert.deepEqual(revoked.map((c) => [c.serialNumber, c.reason]), [[deviceSerial, 'keyCompromise']]);
  });

  test('crl re-signs and prints or writes the CRLs (intermediate-signed, then root-signed)', async () => {
    const printed = await bastion(data, ['crl']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout.match(/BEGIN X509 CRL/g)?.length, 2);
    const out = join(tempDir(), 'copy.pem');
    const written = await bastion(data, ['crl', '--out', out]);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(readFileSync(out, 'utf8'), readFileSync(join(pki, 'crl.pem'), 'utf8'));
    const [first] = readFileSync(out, 'utf8').split(/(?<=-----END X509 CRL-----\n)/);
    const firstFile = join(tempDir(), 'first.pem');
    writeFileSync(firstFile, first!);
    const first509 = await openssl('crl', '-in', firstFile, '-noout', '-text');
    assert.match(first509.out, /Issuer: CN = Test Issuing CA/);
    assert.match(first509.out, new RegExp(`Serial Number: ${deviceSerial}`));
    assert.match(first509.out, /Key Compromise/);
  });

  test('cert sign-csr: signs a device CSR (key stays with the device), to a file or stdout; a bad CSR is one clear line', async () => {
    const dir = tempDir();
    const csr = join(dir, 'dev.csr');
    await execFileP('/usr/bin/openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'dev.key'), '-subj', '/CN=csr-device', '-out', csr]);
    const out = join(dir, 'dev.crt');
    const r = await bastion(data, ['cert', 'sign-csr', '--csr', csr, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Signed client certificate for csr-device/);
    const v = await openssl('verify', '-CAfile', join(pki, 'root.crt'), '-untrusted', join(pki, 'intermediate.crt'), '-purpose', 'sslclient', out);
    assert.ok(v.ok, v.out);
    const printed = await bastion(data, ['cert', 'sign-csr', '--csr', csr]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout.match(/BEGIN CERTIFICATE/g)?.length, 2);
    const listed = JSON.parse((await bastion(data, ['cert', 'list', '--json'])).stdout) as Array<{ commonName: string }>;
    assert.equal(listed.filter((c) => c.commonName === 'csr-device').length, 2);

    const bad = join(dir, 'bad.csr');
    writeFileSync(bad, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n');
    assertOneLineFailure(await bastion(data, ['cert', 'sign-csr', '--csr', bad]), /CSR|request/i);
    assertOneLineFailure(await bastion(data, ['cert', 'sign-csr', '--csr', join(dir, 'missing.csr')]), /cannot read CSR file .*ENOENT/);
  });

  test('ca export-root moves the key away: issuing still works, root operations say the key is offline, --root-key brings it back', async () => {
    const vault = join(tempDir(), 'vault');
    const r = await bastion(data, ['ca', 'export-root', '--out', vault]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(pki, 'root.key')), false);
    assert.equal(statSync(join(vault, 'root.key')).mode & 0o777, 0o600);

    const issued = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'device-2']);
    assert.equal(issued.code, 0, issued.stderr);
    const revoked = await bastion(data, ['cert', 'revoke', serialOf(issued.stdout)]);
    assert.equal(revoked.code, 0, revoked.stderr);

    const intermediateSerial = (JSON.parse((await bastion(data, ['cert', 'list', '--json'])).stdout) as Array<{ kind: string; serialNumber: string }>).find((c) => c.kind === 'intermediate')!.serialNumber;
    assertOneLineFailure(await bastion(data, ['cert', 'revoke', intermediateSerial]), /root CA key, which is offline/);
    assertOneLineFailure(await bastion(data, ['ca', 'export-root', '--out', vault]), /root CA key, which is offline/);
    const crl = await bastion(data, ['crl']);
    assert.equal(crl.code, 0, crl.stderr);
    assert.equal(crl.stdout.match(/BEGIN X509 CRL/g)?.length, 2, 'the last root CRL is kept');

    const back = await bastion(data, ['crl', '--root-key', join(vault, 'root.key'), '--out', join(vault, 'crl.pem')]);
    assert.equal(back.code, 0, back.stderr);
    assert.doesNotMatch(back.stdout, /root CRL kept/);
  });
});

describe('bastion ca with an encrypted root key and no intermediate', () => {
  test('the passphrase comes from stdin or the environment; without it or wrong, one clear line', async () => {
    const data = join(tempDir(), 'data');
    const init = await bastion(data, ['ca', 'init', '--root-key-passphrase-stdin'], { input: 'correct horse\n' });
    assert.equal(init.code, 0, init.stderr);
    assert.match(readFileSync(join(data, 'pki', 'root.key'), 'utf8'), /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);

    // The root issues (no intermediate yet), so issuing needs the passphrase.
    assertOneLineFailure(await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'a']), /encrypted: give its passphrase/);
    const wrong = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'a'], { env: { BASTION_ROOT_KEY_PASSPHRASE: 'wrong' } });
    assertOneLineFailure(wrong, /passphrase/i);
    const ok = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'a'], { env: { BASTION_ROOT_KEY_PASSPHRASE: 'correct horse' } });
    assert.equal(ok.code, 0, ok.stderr);
    const cert = join(data, 'pki', 'issued', 'a.crt');
    assert.equal(readFileSync(cert, 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 1, 'root-issued: no chain to add');
    const v = await openssl('verify', '-CAfile', join(data, 'pki', 'root.crt'), '-crl_check', '-CRLfile', join(data, 'pki', 'crl.pem'), cert);
    assert.ok(v.ok, v.out);

    const inter = await bastion(data, ['ca', 'intermediate', '--cn', 'I', '--root-key-passphrase-stdin'], { input: 'correct horse\n' });
    assert.equal(inter.code, 0, inter.stderr);
    // With the intermediate issuing, no passphrase is needed any more.
    const next = await bastion(data, ['cert', 'issue', '--profile', 'client', '--cn', 'b']);
    assert.equal(next.code, 0, next.stderr);
  });
});
