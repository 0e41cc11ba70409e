/**
 * Every example in README.md runs as written (issue 11, part 8). The README is read and
 * every fenced block extracted, then:
 *
 * - ```yaml (a Bastion config): written to a temp folder and loaded with the real loader
 *   (`loadConfigFile`, as `bastion serve -c` does). The Configuration example also starts
 *   for real (in-process `startServer`, ports set to 0 after loading) in a folder laid out
 *   as after the quick start (`./bastion-data/pki` from `ensureDevPki`), so a path that does
 *   not resolve there fails, and a device, an anonymous plaintext client and a wss client
 *   connect to it.
 * - ```yaml title=NAME (YAML that is not a Bastion config, e.g. prometheus.yml): parsed as
 *   YAML; prometheus.yml is also checked by `promtool check config --syntax-only`.
 * - ```sh: run by a test below (the table COVERED names which, and how it is adapted), or
 *   marked in the README as an outline (first line `# outline: …`); any other sh block
 *   fails the first test, so a new example must be run or marked.
 * - ```js (the MQTT.js snippet): run with Node against a broker started as in the quick
 *   start; it must publish and exit on its own.
 * - ```text (the `acl explain` transcript): each `$ command` is run and its output compared.
 *
 * The quick-start folder is a temp folder with symlinks `dist` and `node_modules` to this
 * checkout (so `node dist/src/cli/main.js …` and `import 'mqtt'` work there as written) and
 * a `bastion` command on PATH (what the package installs). Its broker is `npm start`'s own
 * script (package.json `scripts.start`) run there with `--port 0`: the one adaptation is
 * the port (8883 in the README → the port the banner names).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '../../src/server/load-config.js';
import { ensureDevPki } from '../../src/server/dev-pki.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { BASTION_MAIN, connectMqtt, endQuietly, inboxOf, LISTENING_LINE, Proc, REPO_ROOT, run } from './support.js';
import type { MqttClient } from 'mqtt';

const README_PATH = join(REPO_ROOT, 'README.md');
const README = readFileSync(README_PATH, 'utf8');

interface Block {
  /** The fence's language (`sh`, `yaml`, …). */
  lang: string;
  /** The rest of the info string (e.g. `title=prometheus.yml`). */
  attrs: string;
  /** The block's text, its fence's indentation removed, ending with a newline. */
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
}

/** Every fenced block of a Markdown text (fences may be indented, e.g. inside a list item). */
function blocksOf(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (open === null) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(Math.min(indent, lines[j]!.length - lines[j]!.trimStart().length)));
    assert.ok(j < lines.length, `README.md:${i + 1}: unterminated code block`);
    blocks.push({ lang: open[2]!, attrs: open[3]!.trim(), text: `${body.join('\n')}\n`, line: i + 1 });
    i = j;
  }
  return blocks;
}

const BLOCKS = blocksOf(README);
const firstLine = (b: Block): string => b.text.split('\n').find((l) => l.trim() !== '')!.trim();
/** What names a sh block in COVERED: its first line without a trailing `# comment` (comments get edited). */
const shKey = (b: Block): string => firstLine(b).replace(/\s+#.*$/, '');
const where = (b: Block): string => `README.md:${b.line}`;
const isOutline = (b: Block): boolean => firstLine(b).startsWith('# outline:');
const isBastionConfig = (b: Block): boolean => b.lang === 'yaml' && b.attrs === '';

/**
 * The sh blocks run below, by their first line, with the test that runs each and how it
 * is adapted. A sh block neither listed here nor marked `# outline:` fails the first test.
 */
const COVERED: Record<string, string> = {
  'npm ci && npm start':
    'quick start: `npm start` is package.json scripts.start run in a fresh folder with --port 0 (the build it runs first is the one this test runs from); ' +
    '`npm ci` is not run (the suite runs on the installed dependencies) and `npm test` is the suite this test is part of',
  'mosquitto_sub -h localhost -p 8883 --cafile bastion-data/pki/root.crt \\': 'mosquitto_sub then mosquitto_pub, port rewritten; mosquitto_pub is repeated until mosquitto_sub prints the message',
  'node dist/src/cli/main.js cert issue --profile client --cn device-2': 'run as written in the quick-start folder',
  "node dist/src/cli/main.js sub -t 'devices/device-demo/#' -v --cafile bastion-data/pki/root.crt \\": 'sub then pub with -p <port> added (they default to 8883); pub is repeated until sub prints the message',
  'npm test': 'the suite this test is part of (running it from inside itself would recurse); `npm test -- readme` runs this file',
};

/** The one README block that is the Configuration example: the first yaml block after `## Configuration`. */
function configurationExample(): Block {
  const heading = README.split('\n').findIndex((l) => l === '## Configuration');
  assert.ok(heading >= 0, 'README.md has a "## Configuration" section');
  const b = BLOCKS.find((x) => x.line > heading && isBastionConfig(x));
  assert.ok(b !== undefined, 'the Configuration section has a yaml block');
  return b;
}

/** The sh block whose first line is `first` (a COVERED key). */
function shBlock(first: string): Block {
  const b = BLOCKS.find((x) => x.lang === 'sh' && shKey(x) === first);
  assert.ok(b !== undefined, `README.md has no sh block starting with ${first}`);
  return b;
}

/** A block's commands: continuation lines joined, comments and blank lines dropped. */
function commandsOf(b: Block): string[] {
  return b.text
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `bastion-readme-${prefix}-`));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('README: every fenced block is of a known kind; every sh block is run here or marked as an outline', () => {
  const problems: string[] = [];
  for (const b of BLOCKS) {
    if (b.lang === 'yaml' && (b.attrs === '' || /^title=\S+$/.test(b.attrs))) continue;
    if ((b.lang === 'js' || b.lang === 'text') && b.attrs === '') continue;
    if (b.lang === 'sh' && b.attrs === '') {
      if (!isOutline(b) && COVERED[shKey(b)] === undefined) problems.push(`${where(b)}: sh block "${shKey(b)}" is neither run by this test (COVERED) nor marked "# outline: …"`);
      continue;
    }
    problems.push(`${where(b)}: unknown fence info "${b.lang} ${b.attrs}"`);
  }
  for (const first of Object.keys(COVERED)) {
    if (!BLOCKS.some((b) => b.lang === 'sh' && shKey(b) === first)) problems.push(`COVERED names a sh block the README no longer has: ${first}`);
  }
  assert.deepEqual(problems, []);
  // The blocks the other tests run are all there.
  assert.equal(BLOCKS.filter((b) => b.lang === 'js').length, 1, 'one MQTT.js snippet');
  assert.equal(BLOCKS.filter((b) => b.lang === 'text').length, 1, 'one transcript');
});

test('README: every Bastion config (```yaml) loads through the real config loader', () => {
  const configs = BLOCKS.filter(isBastionConfig);
  assert.ok(configs.length >= 8, `expected the README's config examples, found ${configs.length}`);
  const failures: string[] = [];
  for (const b of configs) {
    const dir = tempDir('config');
    const file = join(dir, 'bastion.yaml');
    writeFileSync(file, b.text);
    try {
      const loaded = loadConfigFile(file);
      assert.equal(loaded.baseDir, dir);
    } catch (err) {
      failures.push(`${where(b)}: ${(err as Error).message}`);
    }
  }
  assert.deepEqual(failures, []);
});

test('README: YAML that is not a Bastion config (```yaml title=…) parses; prometheus.yml passes promtool', async () => {
  const others = BLOCKS.filter((b) => b.lang === 'yaml' && b.attrs !== '');
  assert.ok(others.length >= 1);
  for (const b of others) {
    const name = /^title=(\S+)$/.exec(b.attrs)![1]!;
    assert.equal(typeof parseYaml(b.text), 'object', `${where(b)} (${name}) parses as a YAML mapping`);
    if (name === 'prometheus.yml') {
      const file = join(tempDir('prometheus'), name);
      writeFileSync(file, b.text);
      const r = await run('promtool', ['check', 'config', '--syntax-only', file]);
      assert.equal(r.code, 0, `${where(b)}: promtool check config\n${r.stdout}${r.stderr}`);
    }
  }
});

test('README Configuration example starts for real beside the quick start\'s ./bastion-data (ports set to 0)', { timeout: 60_000 }, async () => {
  const b = configurationExample();
  const dir = tempDir('configuration');
  const pki = await ensureDevPki(join(dir, 'bastion-data'));
  const file = join(dir, 'bastion.yaml');
  writeFileSync(file, b.text);
  const { config, baseDir } = loadConfigFile(file);
  assert.equal(config.dataDir, join(dir, 'bastion-data'));
  for (const l of config.listeners) l.port = 0;
  let server: BastionServer | undefined;
  const clients: MqttClient[] = [];
  try {
    server = await startServer({ config, baseDir });
    const port = (name: string): number => server!.listeners.find((l) => l.config.name === name)!.port;
    const device = { ca: readFileSync(pki.rootCert), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey), protocolVersion: 5 as const };
    clients.push(await connectMqtt(`mqtts://localhost:${port('mqtts')}`, device));
    clients.push(await connectMqtt(`mqtt://127.0.0.1:${port('plain')}`, { protocolVersion: 5 }));
    clients.push(await connectMqtt(`wss://localhost:${port('wss')}/mqtt`, device));
  } finally {
    await Promise.all(clients.map((c) => endQuietly(c)));
    await server?.stop();
  }
});

test('the old example\'s mistake (pki/server.crt beside ./bastion-data) fails with one line saying where the file is', { timeout: 30_000 }, async () => {
  const dir = tempDir('hint');
  await ensureDevPki(join(dir, 'bastion-data'));
  const lines = (tls: string): string => ['dataDir: ./bastion-data', 'listeners:', '  - name: mqtts', '    protocol: mqtts', '    port: 0', `    tls: ${tls}`, ''].join('\n');
  writeFileSync(join(dir, 'bastion.yaml'), lines('{ cert: pki/server.crt, key: pki/server.key, ca: pki/root.crt }'));
  // As the new user ran it: `bastion serve -c bastion.yaml` in the quick start's folder.
  const r = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', 'bastion.yaml'], { cwd: dir, timeoutMs: 20_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(
    r.stderr.includes(`cannot read tls.cert ${join(dir, 'pki', 'server.crt')}: ENOENT (relative paths resolve against the config file's folder ${dir}; the built-in PKI has bastion-data/pki/server.crt)`),
    r.stderr,
  );
  // The right paths, but no PKI made yet: the hint says what makes it.
  const empty = tempDir('hint-empty');
  writeFileSync(join(empty, 'bastion.yaml'), lines('{ cert: bastion-data/pki/server.crt, key: bastion-data/pki/server.key, ca: bastion-data/pki/root.crt }'));
  const { config, baseDir } = loadConfigFile(join(empty, 'bastion.yaml'));
  await assert.rejects(startServer({ config, baseDir }), (err: Error) => {
    const pkiDir = join(empty, 'bastion-data', 'pki');
    assert.equal(err.message, `cannot read tls.cert ${join(pkiDir, 'server.crt')}: ENOENT (no PKI has been made in ${pkiDir} yet: \`bastion serve --data-dir ${join(empty, 'bastion-data')}\`, without -c, makes the development PKI there)`);
    return true;
  });
});

describe('the quick start folder (npm start, then the README commands in it)', () => {
  let folder: string;
  let broker: Proc;
  let port: number;
  let env: NodeJS.ProcessEnv;
  const sh = (cmd: string, timeoutMs = 20_000) => run('sh', ['-c', cmd], { cwd: folder, env, timeoutMs });
  /** `sh -c 'exec …'`: the command itself is the process, so stopping it stops the command. */
  const spawnSh = (cmd: string): Proc => Proc.spawn('sh', ['-c', `exec ${cmd}`], { cwd: folder, env, label: cmd });

  before(async () => {
    folder = tempDir('quickstart');
    symlinkSync(join(REPO_ROOT, 'dist'), join(folder, 'dist'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(folder, 'node_modules'));
    const bin = join(tempDir('bin'), 'bastion');
    writeFileSync(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BASTION_MAIN)} "$@"\n`);
    chmodSync(bin, 0o755);
    env = { ...process.env, PATH: [dirname(process.execPath), dirname(bin), process.env.PATH ?? ''].join(delimiter) };
    const start = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
    broker = Proc.spawn('sh', ['-c', `${start} --port 0`], { cwd: folder, env, label: `npm start (${start} --port 0)` });
    broker.child.stdin?.end();
    port = Number((await broker.waitForOutput(LISTENING_LINE, 30_000, 'stderr'))[3]);
    // The banner ends with the next device's command: all of it is printed once that is there.
    await broker.waitForOutput(/cert issue --profile client --cn device-2/, 10_000, 'stderr');
  });
  after(async () => {
    if (broker === undefined) return;
    broker.kill('SIGTERM');
    await broker.waitExit(15_000).catch(() => broker.stop());
  });

  /** A README line with 8883 replaced by the broker's port. */
  const onOurPort = (s: string): string => {
    assert.match(s, /\b8883\b/, `expected the README's port 8883 in: ${s}`);
    return s.replace(/\b8883\b/g, String(port));
  };

  /** Runs `publish` until `sub` prints `expected` (the subscription is in place some time after its start). */
  async function publishUntilReceived(sub: Proc, publish: string, expected: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await sh(publish);
      assert.equal(r.code, 0, `${publish}\n${r.stdout}${r.stderr}`);
      if (sub.stdout.split('\n').includes(expected)) return;
      if (sub.result !== null) assert.fail(`subscriber exited: ${JSON.stringify(sub.result)}`);
      if (Date.now() > deadline) assert.fail(`the subscriber never printed "${expected}"; it printed: ${sub.stdout}${sub.stderr}`);
      // Wait for the subscriber's output or a short turn, whichever first, then publish again.
      await sub.waitForOutput(new RegExp(`^${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), 250, 'stdout').catch(() => undefined);
      if (sub.stdout.split('\n').includes(expected)) return;
    }
  }

  test('quick start: npm start makes ./bastion-data/pki and prints the README\'s connect commands', () => {
    const pkiDir = join(folder, 'bastion-data', 'pki');
    for (const f of ['root.crt', 'intermediate.crt', 'ca-chain.crt', 'crl.pem', 'inventory.db', 'server.crt', 'server.key', 'device-demo.crt', 'device-demo.key']) {
      assert.ok(existsSync(join(pkiDir, f)), `bastion-data/pki/${f}`);
    }
    assert.equal(statSync(pkiDir).mode & 0o777, 0o700);
    for (const k of ['root.key', 'intermediate.key', 'server.key', 'device-demo.key']) assert.equal(statSync(join(pkiDir, k)).mode & 0o777, 0o600, k);
    assert.match(broker.stderr, new RegExp(`Bastion listening on mqtts://127\\.0\\.0\\.1:${port} \\(mqtts; TLS, client certificates required\\)`));
    // The banner prints exactly the README's commands (on its port).
    const banner = broker.stderr.split('\n').map((l) => l.trim());
    for (const cmd of commandsOf(shBlock("mosquitto_sub -h localhost -p 8883 --cafile bastion-data/pki/root.crt \\"))) assert.ok(banner.includes(onOurPort(cmd)), `banner lacks: ${cmd}\n${broker.stderr}`);
    const next = commandsOf(shBlock('node dist/src/cli/main.js cert issue --profile client --cn device-2'))[0]!;
    assert.ok(banner.includes(next.replace(/\s+#.*$/, '')), `banner lacks: ${next}\n${broker.stderr}`);
  });

  test('README mosquitto_sub / mosquitto_pub commands (port rewritten)', { timeout: 60_000 }, async () => {
    const [subCmd, pubCmd] = commandsOf(shBlock("mosquitto_sub -h localhost -p 8883 --cafile bastion-data/pki/root.crt \\"));
    const sub = spawnSh(onOurPort(subCmd!));
    try {
      await publishUntilReceived(sub, onOurPort(pubCmd!), 'devices/device-demo/hello hello, secure world');
    } finally {
      await sub.stop();
    }
  });

  test('README next-device command issues bastion-data/pki/issued/device-2.{crt,key}', { timeout: 30_000 }, async () => {
    const b = shBlock('node dist/src/cli/main.js cert issue --profile client --cn device-2');
    const r = await sh(b.text);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const ext of ['crt', 'key']) assert.ok(existsSync(join(folder, 'bastion-data', 'pki', 'issued', `device-2.${ext}`)), `device-2.${ext}`);
  });

  test("README Bastion's own clients: sub and pub (with -p <port>)", { timeout: 60_000 }, async () => {
    const [subCmd, pubCmd] = commandsOf(shBlock("node dist/src/cli/main.js sub -t 'devices/device-demo/#' -v --cafile bastion-data/pki/root.crt \\"));
    const withPort = (cmd: string): string => {
      assert.doesNotMatch(cmd, / -p /);
      return cmd.replace(/^(node dist\/src\/cli\/main\.js (?:sub|pub)) /, `$1 -p ${port} `);
    };
    const sub = spawnSh(withPort(subCmd!));
    try {
      await publishUntilReceived(sub, withPort(pubCmd!), 'devices/device-demo/hello hi');
    } finally {
      await sub.stop();
    }
  });

  test('README MQTT.js snippet publishes and exits on its own (port rewritten)', { timeout: 60_000 }, async () => {
    const snippet = BLOCKS.find((b) => b.lang === 'js')!;
    const file = join(folder, 'readme-mqttjs.mjs');
    writeFileSync(file, onOurPort(snippet.text));
    const pki = join(folder, 'bastion-data', 'pki');
    let watcher: MqttClient | undefined;
    try {
      watcher = await connectMqtt(`mqtts://localhost:${port}`, { ca: readFileSync(join(pki, 'root.crt')), cert: readFileSync(join(pki, 'device-demo.crt')), key: readFileSync(join(pki, 'device-demo.key')) });
      const inbox = inboxOf(watcher);
      await watcher.subscribeAsync('devices/device-demo/#', { qos: 1 });
      const r = await run(process.execPath, [file], { cwd: folder, env, timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      await inbox.waitFor((items) => items.some((m) => m.topic === 'devices/device-demo/hello' && m.payload === 'from MQTT.js'), 5000, 'the snippet\'s message');
    } finally {
      await endQuietly(watcher);
    }
  });

  test('README acl explain / lint transcript matches what the commands print', { timeout: 60_000 }, async () => {
    const transcript = BLOCKS.find((b) => b.lang === 'text')!;
    const steps: Array<{ cmd: string; out: string[] }> = [];
    for (const line of transcript.text.replace(/\n$/, '').split('\n')) {
      if (line.startsWith('$ ')) steps.push({ cmd: line.slice(2), out: [] });
      else steps.at(-1)!.out.push(line);
    }
    assert.ok(steps.length >= 3);
    for (const s of steps) {
      const r = await sh(s.cmd);
      assert.equal(r.stdout.replace(/\n$/, ''), s.out.join('\n'), `$ ${s.cmd}\n${r.stderr}`);
    }
  });
});
