/**
 * CRL renewal over a real PKI directory (PkiService with an explicit clock): nothing is
 * re-signed before half the lifetime; the intermediate CRL (7 days) is re-signed after
 * 3.5 days while the root CRL (180 days) is kept; a due root CRL with the root key offline
 * is reported, not hidden; a missing crl.pem is rewritten. And the broker (config
 * `pki.manageCrl`) runs the renewal at start and logs what it did or what must be fixed.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Logger } from '../../src/core/logger.js';
import { parseCrls } from '../../src/pki/index.js';
import { parseConfig } from '../../src/server/load-config.js';
import { PkiService } from '../../src/server/pki-service.js';
import { startServer } from '../../src/server/server.js';

const DAY = 86_400_000;
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bastion-crl-renew-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function pkiAt(t0: Date): Promise<PkiService> {
  const service = await PkiService.init(join(tempDir(), 'pki'), { commonName: 'Renewal Root', now: t0 });
  await service.createIntermediate({ commonName: 'Renewal Issuing', now: t0 });
  return service;
}

function crlsOf(service: PkiService): ReturnType<typeof parseCrls> {
  return parseCrls(readFileSync(service.layout.crl, 'utf8'));
}

describe('PkiService.renewCrlIfDue', () => {
  it('re-signs the intermediate CRL past half its 7 days and keeps the 180-day root CRL', async () => {
    const t0 = new Date(Math.floor(Date.now() / 1000) * 1000);
    const service = await pkiAt(t0);
    try {
      const [issuing0, root0] = crlsOf(service);
      assert.equal(issuing0!.issuer, 'CN=Renewal Issuing');
      assert.equal(root0!.issuer, 'CN=Renewal Root');
      assert.equal(issuing0!.nextUpdate!.getTime() - issuing0!.thisUpdate.getTime(), 7 * DAY);
      assert.equal(root0!.nextUpdate!.getTime() - root0!.thisUpdate.getTime(), 180 * DAY);

      assert.deepEqual(await service.renewCrlIfDue(new Date(t0.getTime() + 3 * DAY)), { renewed: false, problems: [] });
      const renewal = await service.renewCrlIfDue(new Date(t0.getTime() + 4 * DAY));
      assert.deepEqual(renewal, { renewed: true, problems: [] });
      const [issuing1, root1] = crlsOf(service);
      assert.equal(issuing1!.thisUpdate.getTime(), t0.getTime() + 4 * DAY);
      assert.ok(issuing1!.crlNumber! > issuing0!.crlNumber!);
      assert.equal(root1!.thisUpdate.getTime(), root0!.thisUpdate.getTime(), 'root CRL kept');

      unlinkSync(service.layout.crl);
      assert.equal((await service.renewCrlIfDue(new Date(t0.getTime() + 4 * DAY))).renewed, true);
      assert.ok(existsSync(service.layout.crl));
    } finally {
      service.close();
    }
  });

  it('re-signs a due root CRL when the root key is here, and reports it when the key is offline', async () => {
    const t0 = new Date(Math.floor(Date.now() / 1000) * 1000);
    const online = await pkiAt(t0);
    try {
      assert.deepEqual(await online.renewCrlIfDue(new Date(t0.getTime() + 91 * DAY)), { renewed: true, problems: [] });
      assert.equal(crlsOf(online)[1]!.thisUpdate.getTime(), t0.getTime() + 91 * DAY);
    } finally {
      online.close();
    }

    const offline = await pkiAt(t0);
    try {
      await offline.exportRootKey(join(tempDir(), 'vault'));
      // Issuing CRL not due (renewed at day 88), root CRL due: nothing to sign, one problem.
      assert.equal((await offline.renewCrlIfDue(new Date(t0.getTime() + 88 * DAY))).renewed, true);
      const stuck = await offline.renewCrlIfDue(new Date(t0.getTime() + 91 * DAY));
      assert.equal(stuck.renewed, false);
      assert.match(stuck.problems.join('\n'), /root key is offline or locked/);
      // Both due: the intermediate CRL is re-signed, the last root CRL kept, the problem reported.
      const both = await offline.renewCrlIfDue(new Date(t0.getTime() + 95 * DAY));
      assert.equal(both.renewed, true);
      assert.match(both.problems.join('\n'), /root-signed CRL .* root key is offline/);
      const [issuing, root] = crlsOf(offline);
      assert.equal(issuing!.thisUpdate.getTime(), t0.getTime() + 95 * DAY);
      assert.equal(root!.thisUpdate.getTime(), t0.getTime());
    } finally {
      offline.close();
    }
  });
});

/** A logger that keeps what was logged, for asserting on it. */
function recordingLogger(): Logger & { lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const at = (level: string) => (_obj: object, msg?: string) => lines.push({ level, msg: msg ?? '' });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function brokerWithManagedCrl(pkiDir: string, logger: Logger): Promise<Awaited<ReturnType<typeof startServer>>> {
  const dir = tempDir();
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }],
      persistence: { enabled: false },
      pki: { dir: pkiDir, manageCrl: true },
    },
    dir,
  );
  return startServer({ config, baseDir, logger });
}

describe('broker with pki.manageCrl', () => {
  it('re-signs a stale CRL at start and logs it at info', async () => {
    const service = await pkiAt(new Date(Date.now() - 5 * DAY));
    const before = readFileSync(service.layout.crl, 'utf8');
    service.close();
    const logger = recordingLogger();
    const server = await brokerWithManagedCrl(service.layout.dir, logger);
    await server.stop();
    assert.ok(logger.lines.some((l) => l.level === 'info' && l.msg === 'CRL re-signed'), JSON.stringify(logger.lines));
    assert.notEqual(readFileSync(service.layout.crl, 'utf8'), before);
  });

  it('logs at error when the root CRL is due and the root key is offline', async () => {
    const service = await pkiAt(new Date(Date.now() - 100 * DAY));
    await service.exportRootKey(join(tempDir(), 'vault'));
    service.close();
    const logger = recordingLogger();
    const server = await brokerWithManagedCrl(service.layout.dir, logger);
    await server.stop();
    assert.ok(logger.lines.some((l) => l.level === 'error' && /root key is offline/.test(l.msg)), JSON.stringify(logger.lines));
  });

  it('refuses to start when there is no PKI to manage', async () => {
    await assert.rejects(brokerWithManagedCrl(join(tempDir(), 'nothing'), recordingLogger()), (err: unknown) => (err as { code?: string }).code === 'ERR_PKI_NO_CA');
  });
});
