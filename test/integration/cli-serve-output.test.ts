/**
 * What `bastion serve` writes and how it stops (issue 11, part 10), with real processes:
 * the banner and the logs on one stream (stderr) in order; JSON lines for machines, human
 * lines with local times on a terminal (a real pty through `script`) or with
 * `log.format: pretty`; `json` forces JSON even on a terminal; a bad format is one line;
 * and SIGTERM to `npm start` stops the broker gracefully instead of orphaning it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASTION_MAIN, LISTENING_LINE, Proc, REPO_ROOT, run } from './support.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bastion-serve-output-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A plaintext broker on a free port with the given `log:` lines (the format is the subject here). */
function configWith(dir: string, log: string[]): string {
  const file = join(dir, 'bastion.yaml');
  const lines = ['dataDir: data', 'listeners:', '  - name: plain', '    protocol: mqtt', '    port: 0', '    insecure: true', '    allowAnonymous: true', 'persistence:', '  enabled: false', 'log:', ...log.map((l) => `  ${l}`), ''];
  writeFileSync(file, lines.join('\n'));
  return file;
}

/** `sh -c` quoting for one argument. */
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `bastion serve` under a real terminal (util-linux `script`), so stderr.isTTY is true. */
function serveOnTty(args: string[], cwd: string): Proc {
  const cmd = [process.execPath, BASTION_MAIN, 'serve', ...args].map(q).join(' ');
  const p = Proc.spawn('script', ['-qec', cmd, '/dev/null'], { cwd, label: `tty: bastion serve ${args.join(' ')}` });
  p.child.stdin?.end();
  return p;
}

/** Runs `bastion serve -c <config>` until its listening banner, then stops it with SIGTERM; its exit and output. */
async function serveUntilListening(config: string, cwd: string, env?: NodeJS.ProcessEnv): Promise<Awaited<ReturnType<Proc['waitExit']>>> {
  const p = Proc.spawn(process.execPath, [BASTION_MAIN, 'serve', '-c', config], { cwd, ...(env !== undefined ? { env } : {}) });
  try {
    await p.waitForOutput(LISTENING_LINE, 15_000, 'stderr');
    p.kill('SIGTERM');
    return await p.waitExit(10_000);
  } finally {
    await p.stop();
  }
}

const PRETTY = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.\d{3} INFO  listening {2}listener=plain protocol=mqtt host=127\.0\.0\.1 port=\d+\r?$/m;

test('without a terminal: JSON records and the banner on stderr, in the order they happened; nothing on stdout', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  const r = await serveUntilListening(configWith(dir, ['level: info']), dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  const at = (re: RegExp): number => lines.findIndex((l) => re.test(l));
  // The listener's record, then the banner, then the shutdown records: one stream, in order.
  assert.ok(at(/^\{.*"msg":"listening"/) >= 0 && at(/^\{.*"msg":"listening"/) < at(LISTENING_LINE), r.stderr);
  assert.ok(at(LISTENING_LINE) < at(/^\{.*"msg":"shutting down"/), r.stderr);
  for (const l of lines.filter((x) => !LISTENING_LINE.test(x))) assert.doesNotThrow(() => JSON.parse(l), l);
});

test('log.format: pretty prints one human line per record with the local time (TZ=Asia/Kathmandu, UTC+05:45)', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  const before = Date.now();
  const r = await serveUntilListening(configWith(dir, ['format: pretty']), dir, { ...process.env, TZ: 'Asia/Kathmandu' });
  assert.equal(r.code, 0, r.stderr);
  const m = PRETTY.exec(r.stderr);
  assert.ok(m !== null, r.stderr);
  assert.doesNotMatch(r.stderr, /^\{/m, 'no JSON record');
  // The printed wall-clock time, read as UTC+05:45, is the moment of the record.
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const printed = Date.UTC(y, mo - 1, d, h, mi, s) - (5 * 60 + 45) * 60_000;
  assert.ok(printed >= before - 2000 && printed <= Date.now() + 1000, `printed ${new Date(printed).toISOString()} is not local time`);
});

test('on a terminal the default (auto) is human lines; log.format: json forces JSON there', { timeout: 40_000 }, async () => {
  const dir = tempDir();
  const auto = serveOnTty(['-c', configWith(dir, ['level: info'])], dir);
  const dir2 = tempDir();
  const json = serveOnTty(['-c', configWith(dir2, ['format: json'])], dir2);
  try {
    await auto.waitForOutput(LISTENING_LINE, 15_000);
    assert.match(auto.stdout, PRETTY);
    await json.waitForOutput(LISTENING_LINE, 15_000);
    assert.match(json.stdout, /^\{"level":30,"time":\d+,"pid":\d+,"listener":"plain"/m);
    for (const p of [auto, json]) {
      p.kill('SIGTERM');
      await p.waitExit(10_000);
    }
  } finally {
    // Closing the pty (script's end) hangs up the broker on it.
    await Promise.all([auto.stop(), json.stop()]);
  }
});

test('a bad log.format or --log-format is one readable line and a non-zero exit', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  const bad = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', configWith(dir, ['format: fancy'])], { cwd: dir });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^bastion: config error at log\.format: [^\n]*\n$/);
  const flag = await run(process.execPath, [BASTION_MAIN, 'serve', '--log-format', 'xml', '--data-dir', join(dir, 'd')], { cwd: dir });
  assert.notEqual(flag.code, 0);
  assert.equal(flag.stderr, 'bastion: invalid --log-format xml (auto, json, pretty)\n');
});

test('SIGTERM to `npm start` reaches the broker: it logs the shutdown, stops, and npm exits 0', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  // --ignore-scripts skips only prestart (the build, already done for the test run); start runs as written in package.json.
  const npm = Proc.spawn('npm', ['start', '--ignore-scripts', '--', '--data-dir', join(dir, 'data'), '--port', '0'], { cwd: REPO_ROOT, label: 'npm start' });
  npm.child.stdin?.end();
  let brokerPid: number | undefined;
  try {
    // The banner follows the signal handlers (either stream: before this change it was on
    // stdout, and the test must fail on its assertions, not hang); the log records carry the pid.
    await Promise.any([npm.waitForOutput(LISTENING_LINE, 30_000, 'stderr'), npm.waitForOutput(LISTENING_LINE, 30_000, 'stdout')]);
    brokerPid = Number(/"pid":(\d+)/.exec(npm.stderr)?.[1]);
    assert.ok(brokerPid > 0 && brokerPid !== npm.pid, npm.stderr);
    npm.kill('SIGTERM');
    const r = await npm.waitExit(20_000);
    assert.match(r.stderr, /"signal":"SIGTERM","msg":"shutting down"/);
    assert.match(r.stderr, /"msg":"stopped"/);
    assert.equal(r.code, 0, r.stderr);
    assert.throws(() => process.kill(brokerPid!, 0), { code: 'ESRCH' }, 'the broker is gone, not orphaned');
  } finally {
    // Today's failure mode leaves the broker running without a parent: end the one we started.
    if (brokerPid !== undefined && brokerPid > 0) {
      try {
        process.kill(brokerPid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await npm.stop();
  }
});
