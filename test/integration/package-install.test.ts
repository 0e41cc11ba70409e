/**
 * The npm package holds what a user runs and works once installed (issue 11, part 10):
 * `npm pack` of this checkout (already built) ships dist/src's JavaScript, README and
 * package.json and nothing else (no tests, bench, TypeScript sources or source maps);
 * `npm install -g --prefix <tmp>` of that tarball gives a `bastion` that prints its
 * version and starts a secure zero-config broker whose hints say `bastion …`; an
 * application next to it imports the device SDK as `bastion-mqtt/device` (and nothing
 * deeper: package.json `exports`).
 *
 * Time: dependencies come from npm's cache (--prefer-offline). better-sqlite3 would
 * otherwise download a prebuilt binary from GitHub or compile SQLite (~3 min on two
 * cores); its installer, prebuild-install, first looks in a local prebuilds folder
 * (npm_config_better_sqlite3_local_prebuilds), so the test hands it the binary this
 * checkout already built for this very Node, packed the way a GitHub prebuild is.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LISTENING_LINE, Proc, REPO_ROOT, run } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-package-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack ships only what runs; npm install -g of it gives a working bastion', { timeout: 240_000 }, async (t) => {
  const { name, version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

  // What the tarball holds (npm pack runs no build: dist is the one the test run built).
  const packed = JSON.parse(ok(await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: REPO_ROOT, timeoutMs: 60_000 }), 'npm pack')) as Array<{ filename: string; entryCount: number; files: Array<{ path: string }> }>;
  const files = packed[0]!.files.map((f) => f.path);
  t.diagnostic(`tarball: ${packed[0]!.entryCount} files`);
  assert.ok(files.includes('dist/src/cli/main.js') && files.includes('package.json') && files.includes('README.md'), files.join(' '));
  // The web console ships built (src/admin/console-assets.ts serves dist/console beside dist/src): no CDN, no build on install.
  assert.ok(files.includes('dist/console/index.html') && files.some((f) => /^dist\/console\/assets\/.+\.js$/.test(f)), 'the built console is in the package');
  const extra = files.filter((f) => !(/^dist\/src\/.+\.js$/.test(f) || /^dist\/console\/(index\.html|assets\/[\w.-]+\.(js|css|svg))$/.test(f) || f === 'package.json' || f === 'README.md' || /^LICEN[CS]E/.test(f)));
  assert.deepEqual(extra, [], 'only dist/src JavaScript, the built console, README, LICENSE and package.json');

  // better-sqlite3's binary, as prebuild-install expects a prebuild for this Node's ABI.
  const sqliteVersion = (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', 'better-sqlite3', 'package.json'), 'utf8')) as { version: string }).version;
  const prebuilds = join(dir, 'prebuilds');
  mkdirSync(prebuilds);
  const prebuild = join(prebuilds, `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`);
  ok(await run('tar', ['-czf', prebuild, '-C', join(REPO_ROOT, 'node_modules', 'better-sqlite3'), 'build/Release/better_sqlite3.node']), 'tar of the prebuild');

  const prefix = join(dir, 'global');
  const started = Date.now();
  const env = { ...process.env, npm_config_better_sqlite3_local_prebuilds: prebuilds };
  ok(await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed[0]!.filename)], { env, timeoutMs: 180_000 }), 'npm install -g');
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`npm install -g of the tarball: ${seconds.toFixed(1)} s`);
  const bin = join(prefix, 'bin', 'bastion');
  assert.ok(existsSync(join(prefix, 'lib', 'node_modules', name, 'dist', 'src', 'cli', 'main.js')));

  assert.equal(ok(await run(bin, ['--version']), 'bastion --version'), `${version}\n`);

  // The device SDK as an application imports it: package.json `exports` names `.` and
  // `./device`, and nothing deeper.
  const app = join(dir, 'app');
  mkdirSync(join(app, 'node_modules'), { recursive: true });
  symlinkSync(join(prefix, 'lib', 'node_modules', name), join(app, 'node_modules', name), 'dir');
  const probe = [
    `const sdk = await import('${name}/device');`,
    `const root = await import('${name}');`,
    `let deep = 'importable';`,
    `try { await import('${name}/dist/src/server/server.js'); } catch (err) { deep = err.code; }`,
    'console.log(typeof sdk.provision, typeof sdk.BastionDevice, typeof sdk.FileIdentityStore, root.provision === sdk.provision, deep);',
  ].join('\n');
  assert.equal(ok(await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: app }), `import ${name}/device`), 'function function function true ERR_PACKAGE_PATH_NOT_EXPORTED\n');

  // A secure zero-config broker in an empty directory, started as a user would.
  const cwd = join(dir, 'work');
  mkdirSync(cwd);
  const serve = Proc.spawn(bin, ['serve', '--port', '0'], { cwd, label: 'installed bastion serve' });
  serve.child.stdin?.end();
  try {
    await serve.waitForOutput(/cert issue --profile client --cn device-2/, 20_000, 'stderr');
    assert.match(serve.stderr, LISTENING_LINE);
    assert.match(serve.stderr, /mqtts:\/\/127\.0\.0\.1:\d+ \(mqtts; TLS, client certificates required\)/);
    assert.match(serve.stderr, /^ {2}bastion cert issue --profile client --cn device-2$/m);
    assert.match(serve.stderr, /revoke with `bastion cert revoke SERIAL`/);
    assert.doesNotMatch(serve.stderr, /node \S*main\.js/);
    assert.ok(existsSync(join(cwd, 'bastion-data', 'pki', 'root.crt')));
    serve.kill('SIGTERM');
    assert.equal((await serve.waitExit(15_000)).code, 0, serve.stderr);
  } finally {
    await serve.stop();
  }
});
