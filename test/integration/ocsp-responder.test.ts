/**
 * The OCSP responder, as `bastion ocsp serve` (a child process) and inside the broker
 * (config `pki.ocsp`): `openssl ocsp` reports good, then revoked right after
 * `bastion cert revoke`; certificates issued after `ca set-ocsp-url` carry the URL;
 * GET and POST work; malformed requests get an OCSP malformedRequest with HTTP 200;
 * other paths 404, oversized bodies 413; the intermediate's status is signed by the root.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { buildOcspRequest, parseOcspResponse } from '../../src/pki/index.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer } from '../../src/server/server.js';
import { BASTION_MAIN, Proc, killAllProcs, run, type ProcResult } from './support.js';

const execFileP = promisify(execFile);
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bastion-ocsp-'));
  dirs.push(d);
  return d;
}
after(async () => {
  await killAllProcs();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function bastion(dataDir: string, args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, ...args, '--data-dir', dataDir], { timeoutMs: 20_000 });
}

async function ok(dataDir: string, args: string[]): Promise<string> {
  const r = await bastion(dataDir, args);
  assert.equal(r.code, 0, `bastion ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function opensslOcsp(url: string, pki: string, cert: string, issuer = join(pki, 'intermediate.crt'), extra: string[] = []): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP('/usr/bin/openssl', ['ocsp', '-url', url, '-issuer', issuer, ...extra, '-cert', cert, '-CAfile', join(pki, 'root.crt'), '-timeout', '5']);
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return `FAILED ${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

function post(url: string, body: Buffer, type = 'application/ocsp-request'): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
}

describe('bastion ocsp serve', () => {
  let data: string;
  let pki: string;
  let responder: Proc;
  let url: string;
  let leaf: string;
  let leafSerial: string;

  before(async () => {
    data = join(tempDir(), 'data');
    pki = join(data, 'pki');
    await ok(data, ['ca', 'init', '--cn', 'OCSP Root']);
    await ok(data, ['ca', 'intermediate', '--cn', 'OCSP Issuing']);
    responder = Proc.spawn(process.execPath, [BASTION_MAIN, 'ocsp', 'serve', '--port', '0', '--data-dir', data], { label: 'bastion ocsp serve' });
    responder.child.stdin?.end();
    const m = await responder.waitForOutput(/OCSP responder listening on (http:\/\/127\.0\.0\.1:\d+\/)/, 15_000);
    url = m[1]!;
    await ok(data, ['ca', 'set-ocsp-url', url]);
    const issued = await ok(data, ['cert', 'issue', '--profile', 'client', '--cn', 'ocsp-device']);
    leafSerial = /serial:\s+([0-9A-F]+)/.exec(issued)![1]!;
    leaf = join(pki, 'issued', 'ocsp-device.crt');
  });

  after(async () => {
    responder?.kill('SIGTERM');
    await responder?.waitExit(5000).catch(() => undefined);
  });

  test('certificates issued after set-ocsp-url carry the responder URL', async () => {
    const { stdout } = await execFileP('/usr/bin/openssl', ['x509', '-in', leaf, '-noout', '-ext', 'authorityInfoAccess']);
    assert.match(stdout, new RegExp(`OCSP - URI:${url.replace(/[.]/g, '\\.')}`));
  });

  test('openssl ocsp: good, then revoked right after bastion cert revoke (signature verified against the root)', async () => {
    const good = await opensslOcsp(url, pki, leaf);
    assert.match(good, /Response verify OK/);
    assert.match(good, /: good/);
    await ok(data, ['cert', 'revoke', leafSerial, '--reason', 'keyCompromise']);
    const revoked = await opensslOcsp(url, pki, leaf);
    assert.match(revoked, /Response verify OK/);
    assert.match(revoked, /: revoked/);
    assert.match(revoked, /Reason: keyCompromise/);
  });

  test('the intermediate is answered by the root; SHA-256 CertIDs are matched too', async () => {
    const out = await opensslOcsp(url, pki, join(pki, 'intermediate.crt'), join(pki, 'root.crt'));
    assert.match(out, /Response verify OK/);
    assert.match(out, /intermediate\.crt: good/);
    const sha256 = await opensslOcsp(url, pki, join(pki, 'intermediate.crt'), join(pki, 'root.crt'), ['-sha256']);
    assert.match(sha256, /Response verify OK/);
    assert.match(sha256, /intermediate\.crt: good/);
  });

  test('GET /<base64> works like POST', async () => {
    const server = await ok(data, ['cert', 'issue', '--profile', 'server', '--cn', 'get.example']);
    void server;
    const der = buildOcspRequest({ certPem: readFileSync(join(pki, 'issued', 'get.example.crt'), 'utf8'), issuerPem: readFileSync(join(pki, 'intermediate.crt'), 'utf8') });
    const res = await fetch(`${url}${encodeURIComponent(der.toString('base64'))}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/ocsp-response');
    const info = parseOcspResponse(Buffer.from(await res.arrayBuffer()));
    assert.equal(info.responseStatus, 'successful');
    assert.equal(info.responses[0]?.status, 'good');
  });

  test('malformed requests: OCSP malformedRequest with HTTP 200; other paths 404; oversized 413; wrong type 415', async () => {
    const bad = await post(url, Buffer.from('not an OCSP request'));
    assert.equal(bad.status, 200);
    assert.equal(parseOcspResponse(Buffer.from(await bad.arrayBuffer())).responseStatus, 'malformedRequest');
    const badGet = await fetch(`${url}AAAA`);
    assert.equal(badGet.status, 200);
    assert.equal(parseOcspResponse(Buffer.from(await badGet.arrayBuffer())).responseStatus, 'malformedRequest');
    assert.equal((await post(`${url}other`, Buffer.from([0x30, 0x00]))).status, 404);
    assert.equal((await fetch(`${url}favicon.ico`)).status, 404);
    assert.equal((await post(url, Buffer.alloc(20_000, 0x30))).status, 413);
    assert.equal((await post(url, Buffer.from([0x30, 0x00]), 'text/plain')).status, 415);
    assert.equal((await fetch(url, { method: 'PUT', body: 'x' })).status, 405);
    // Still serving after all of that.
    assert.match(await opensslOcsp(url, pki, leaf), /: revoked/);
  });
});

describe('OCSP inside the broker (config pki.ocsp)', () => {
  test('startServer runs the responder from the data dir and stops it with the broker', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const pki = join(data, 'pki');
    await ok(data, ['ca', 'init']);
    await ok(data, ['ca', 'intermediate', '--cn', 'Broker Issuing']);
    await ok(data, ['cert', 'issue', '--profile', 'server', '--cn', 'localhost', '--san', 'DNS:localhost,IP:127.0.0.1']);
    const device = await ok(data, ['cert', 'issue', '--profile', 'client', '--cn', 'dev-b']);
    const { config, baseDir } = parseConfig(
      {
        dataDir: data,
        listeners: [
          {
            name: 'mqtts',
            protocol: 'mqtts',
            port: 0,
            tls: { cert: join(pki, 'issued', 'localhost.crt'), key: join(pki, 'issued', 'localhost.key'), ca: join(pki, 'root.crt'), crl: join(pki, 'crl.pem') },
          },
        ],
        persistence: { enabled: false },
        log: { level: 'silent' },
        pki: { manageCrl: true, ocsp: { host: '127.0.0.1', port: 0 } },
      },
      dir,
    );
    const server = await startServer({ config, baseDir });
    try {
      const port = server.pki?.ocsp?.port;
      assert.ok(port !== undefined && port > 0);
      const brokerUrl = `http://127.0.0.1:${port}/`;
      const leaf = join(pki, 'issued', 'dev-b.crt');
      assert.match(await opensslOcsp(brokerUrl, pki, leaf), /: good/);
      await ok(data, ['cert', 'revoke', /serial:\s+([0-9A-F]+)/.exec(device)![1]!]);
      assert.match(await opensslOcsp(brokerUrl, pki, leaf), /: revoked/);
    } finally {
      await server.stop();
    }
    const after = await fetch(`http://127.0.0.1:${server.pki!.ocsp!.port}/`).then(
      () => 'answered',
      () => 'refused',
    );
    assert.equal(after, 'refused');
  });
});
