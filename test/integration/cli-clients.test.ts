/**
 * `bastion pub` / `bastion sub` against a real Mosquitto broker (Debian's /usr/sbin/mosquitto),
 * run as child processes through the compiled debugging entry `dist/src/cli/client-main.js`.
 * The broker gets a generated config with four listeners on free loopback ports: mutual TLS
 * (require_certificate, certificates from our own test PKI), plain TCP with anonymous access,
 * plain TCP that refuses everyone (CONNACK errors), and plain TCP with an ACL (PUBACK errors). No sleeps: every wait is on an
 * event (a line on a stream, a process exit) with a timeout.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRootCa, issueCertificate } from '../../src/pki/index.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';

const CLI = fileURLToPath(new URL('../../src/cli/client-main.js', import.meta.url));
const MOSQUITTO = '/usr/sbin/mosquitto';
const WAIT_MS = 15_000;
const TIMEOUT_EXIT = 27;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** A child process whose output is collected, with event-based waits. */
class Child {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly exit: Promise<Exit>;
  private readonly listeners = new Set<() => void>();

  constructor(command: string, args: string[], input?: string) {
    this.proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.proc);
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      this.notify();
    });
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    this.exit = new Promise<Exit>((resolve, reject) => {
      this.proc.once('error', reject);
      this.proc.once('close', (code, signal) => {
        children.delete(this.proc);
        this.notify();
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
    this.exit.catch(() => undefined);
    this.proc.stdin?.end(input);
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Resolves when `pattern` matches the collected stderr (or stdout); rejects on exit or timeout. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, what: string, ms = WAIT_MS): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let exited = false;
      void this.exit.then(() => {
        exited = true;
        check();
      });
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; stdout=${JSON.stringify(this.stdout)} stderr=${JSON.stringify(this.stderr)}`));
      }, ms);
      const check = (): void => {
        const match = this[stream].match(pattern);
        if (match) {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve(match);
        } else if (exited) {
          clearTimeout(timer);
          this.listeners.delete(check);
          reject(new Error(`process exited while waiting for ${what}; stdout=${JSON.stringify(this.stdout)} stderr=${JSON.stringify(this.stderr)}`));
        }
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves with the exit; kills the process and rejects after `ms`. */
  exited(ms = WAIT_MS): Promise<Exit> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        reject(new Error(`process did not exit within ${ms} ms; stdout=${JSON.stringify(this.stdout)} stderr=${JSON.stringify(this.stderr)}`));
      }, ms);
      this.exit.then(
        (exit) => {
          clearTimeout(timer);
          resolve(exit);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }
}

function cli(args: string[], input?: string): Child {
  return new Child(process.execPath, [CLI, ...args], input);
}

function runCli(args: string[], input?: string, ms = WAIT_MS): Promise<Exit> {
  return cli(args, input).exited(ms);
}

/** A free loopback port: listen on port 0, read the port, close. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** The stderr of a failed command must be exactly one readable line, no stack trace. */
function assertOneErrorLine(exit: Exit, pattern: RegExp): void {
  assert.notEqual(exit.code, 0, `expected a non-zero exit; stderr=${exit.stderr}`);
  assert.equal(exit.signal, null);
  const lines = exit.stderr.split('\n').filter((line) => line.length > 0);
  assert.equal(lines.length, 1, `expected one stderr line, got: ${JSON.stringify(exit.stderr)}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(exit.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(exit.stdout, '');
}

interface Mosquitto {
  proc: Child;
  tlsPort: number;
  plainPort: number;
  denyPort: number;
  /** Plain TCP, anonymous, with an ACL that allows only cli/open/#. */
  aclPort: number;
  stop(): Promise<void>;
}

async function startMosquitto(dir: string, pki: TestPki): Promise<Mosquitto> {
  for (let attempt = 1; ; attempt++) {
    const [tlsPort, plainPort, denyPort, aclPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    // Anonymous clients on the ACL listener may publish to cli/open/# and nothing else.
    const aclPath = join(dir, 'acl');
    await writeFile(aclPath, 'topic readwrite cli/open/#\n');
    const config = [
      'per_listener_settings true',
      'persistence false',
      'log_dest stderr',
      'log_type all',
      'log_timestamp false',
      // Mosquitto started as root drops to the `mosquitto` user, which cannot read our key files.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `listener ${tlsPort} 127.0.0.1`,
      'allow_anonymous true',
      `cafile ${pki.caCert}`,
      `certfile ${pki.serverCert}`,
      `keyfile ${pki.serverKey}`,
      'require_certificate true',
      `listener ${plainPort} 127.0.0.1`,
      'allow_anonymous true',
      `listener ${denyPort} 127.0.0.1`,
      'allow_anonymous false',
      `listener ${aclPort} 127.0.0.1`,
      'allow_anonymous true',
      `acl_file ${aclPath}`,
      '',
    ].join('\n');
    const configPath = join(dir, `mosquitto-${attempt}.conf`);
    await writeFile(configPath, config);
    const proc = new Child(MOSQUITTO, ['-c', configPath]);
    try {
      await proc.waitFor('stderr', /mosquitto version \S+ running/, 'mosquitto to start');
    } catch (err) {
      proc.proc.kill('SIGKILL');
      // Another process may have taken a port between our probe and mosquitto's bind.
      if (attempt < 3 && /Address already in use/.test(proc.stderr)) continue;
      throw err;
    }
    return {
      proc,
      tlsPort,
      plainPort,
      denyPort,
      aclPort,
      async stop() {
        proc.proc.kill('SIGTERM');
        await proc.exited();
      },
    };
  }
}

describe('bastion pub / sub against mosquitto', { timeout: 180_000 }, () => {
  let dir: string;
  let pki: TestPki;
  let broker: Mosquitto;
  let otherCaFile: string;
  let topicCounter = 0;

  const uniqueTopic = (name: string): string => `cli/${process.pid}/${name}/${++topicCounter}`;
  const tlsArgs = (): string[] => [
    '-h',
    '127.0.0.1',
    '-p',
    String(broker.tlsPort),
    '--cafile',
    pki.caCert,
    '--cert',
    pki.clients['alice']!.cert,
    '--key',
    pki.clients['alice']!.key,
  ];
  const plainArgs = (): string[] => ['-h', '127.0.0.1', '-p', String(broker.plainPort), '--plain'];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bastion-cli-clients-'));
    pki = await makeTestPki(join(dir, 'pki'), ['alice']);
    // A second, unrelated CA: the broker's certificate does not chain to it.
    const otherCa = await createRootCa({ commonName: 'Some Other CA' });
    otherCaFile = join(dir, 'other-ca.crt');
    await writeFile(otherCaFile, otherCa.certPem);
    broker = await startMosquitto(dir, pki);
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await broker?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Starts `sub -C 1 -d`, waits for its SUBACK, publishes, and checks what the sub printed. */
  async function roundTrip(conn: string[], options: { qos: 0 | 1 | 2; version: '5' | '311'; verbose?: boolean }): Promise<void> {
    const topic = uniqueTopic(`qos${options.qos}-v${options.version}`);
    const message = `hello qos${options.qos} v${options.version} ✓`;
    const tag = `${options.version}-${options.qos}-${topicCounter}-${conn.includes('--plain') ? 'plain' : 'tls'}`;
    const common = [...conn, '-q', String(options.qos), '-V', options.version];
    const sub = cli(['sub', ...common, '-t', topic, '-C', '1', '-d', '-i', `sub-${tag}`, ...(options.verbose ? ['-v'] : [])]);
    await sub.waitFor('stderr', /received SUBACK/, 'the SUBACK of sub');
    const pub = await runCli(['pub', ...common, '-t', topic, '-m', message, '-i', `pub-${tag}`]);
    assert.equal(pub.code, 0, `pub failed: ${pub.stderr}`);
    assert.equal(pub.stderr, '');
    assert.equal(pub.stdout, '');
    const exit = await sub.exited();
    assert.equal(exit.code, 0, `sub failed: ${exit.stderr}`);
    assert.equal(exit.stdout, options.verbose ? `${topic} ${message}\n` : `${message}\n`);
    // The broker saw the protocol version we asked for (p2 = MQTT 3.1.1, p5 = MQTT 5) and a
    // clean DISCONNECT from the publisher.
    const level = options.version === '5' ? 'p5' : 'p2';
    await broker.proc.waitFor('stderr', new RegExp(`as pub-${tag} \\(${level},`), `pub-${tag} connecting with ${level}`);
    await broker.proc.waitFor('stderr', new RegExp(`as sub-${tag} \\(${level},`), `sub-${tag} connecting with ${level}`);
    await broker.proc.waitFor('stderr', new RegExp(`Received DISCONNECT from pub-${tag}\\b`), `a clean DISCONNECT from pub-${tag}`);
  }

  for (const transport of ['mutual TLS', 'plain TCP'] as const) {
    for (const version of ['5', '311'] as const) {
      for (const qos of [0, 1, 2] as const) {
        test(`round trip over ${transport}, MQTT ${version === '5' ? '5' : '3.1.1'}, QoS ${qos}`, async () => {
          await roundTrip(transport === 'mutual TLS' ? tlsArgs() : plainArgs(), { qos, version });
        });
      }
    }
  }

  test('-v prints "topic payload"', async () => {
    await roundTrip(tlsArgs(), { qos: 1, version: '5', verbose: true });
  });

  test('-C N exits 0 after N messages, in order; wildcard filters and repeated -t work', async () => {
    const base = uniqueTopic('count');
    const sub = cli(['sub', ...tlsArgs(), '-t', `${base}/+`, '-t', `${base}-unused`, '-q', '1', '-C', '2', '-v', '-d']);
    await sub.waitFor('stderr', /received SUBACK/, 'the SUBACK of sub');
    for (const n of [1, 2, 3]) {
      const pub = await runCli(['pub', ...tlsArgs(), '-t', `${base}/${n}`, '-m', `m${n}`, '-q', '1']);
      assert.equal(pub.code, 0, pub.stderr);
    }
    const exit = await sub.exited();
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(exit.stdout, `${base}/1 m1\n${base}/2 m2\n`);
  });

  test('a retained message is delivered to a later subscriber', async () => {
    const topic = uniqueTopic('retained');
    const pub = await runCli(['pub', ...tlsArgs(), '-t', topic, '-m', 'kept', '-r', '-q', '1']);
    assert.equal(pub.code, 0, pub.stderr);
    const exit = await runCli(['sub', ...tlsArgs(), '-t', topic, '-C', '1', '-v', '-W', '10']);
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(exit.stdout, `${topic} kept\n`);
    // Clear it again (an empty retained message deletes it).
    const clear = await runCli(['pub', ...tlsArgs(), '-t', topic, '-m', '', '-r', '-q', '1']);
    assert.equal(clear.code, 0, clear.stderr);
  });

  test('the payload can come from a file (-f) or from stdin (-s)', async () => {
    const topic = uniqueTopic('sources');
    const file = join(dir, 'payload.bin');
    await writeFile(file, 'from a file');
    const sub = cli(['sub', ...plainArgs(), '-t', topic, '-q', '2', '-C', '2', '-d']);
    await sub.waitFor('stderr', /received SUBACK/, 'the SUBACK of sub');
    const fromFile = await runCli(['pub', ...plainArgs(), '-t', topic, '-f', file, '-q', '2']);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const fromStdin = await runCli(['pub', ...plainArgs(), '-t', topic, '-s', '-q', '2'], 'from stdin');
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    const exit = await sub.exited();
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(exit.stdout, 'from a file\nfrom stdin\n');
  });

  test('--insecure-skip-verify connects without --cafile but warns on stderr', async () => {
    const exit = await runCli([
      'pub',
      '-h',
      '127.0.0.1',
      '-p',
      String(broker.tlsPort),
      '--cert',
      pki.clients['alice']!.cert,
      '--key',
      pki.clients['alice']!.key,
      '--insecure-skip-verify',
      '-t',
      uniqueTopic('insecure'),
      '-m',
      'x',
      '-q',
      '1',
    ]);
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /^warning: --insecure-skip-verify: .*NOT verified/);
  });

  test('a broker certificate from an unknown CA: one-line TLS error, non-zero exit', async () => {
    const args = tlsArgs();
    args[args.indexOf('--cafile') + 1] = otherCaFile;
    for (const command of [['pub', '-t', uniqueTopic('wrong-ca'), '-m', 'x'], ['sub', '-t', uniqueTopic('wrong-ca')]]) {
      const exit = await runCli([...command, ...args]);
      assertOneErrorLine(exit, /TLS handshake with 127\.0\.0\.1:\d+ failed: the broker certificate is not trusted/);
    }
  });

  test('no client certificate against require_certificate: one-line error, non-zero exit', async () => {
    const exit = await runCli(['pub', '-h', '127.0.0.1', '-p', String(broker.tlsPort), '--cafile', pki.caCert, '-t', uniqueTopic('nocert'), '-m', 'x', '-q', '1']);
    assertOneErrorLine(exit, /client certificate/);
  });

  test('a client certificate from another CA is rejected by the broker', async () => {
    const stranger = await createRootCa({ commonName: 'Stranger CA' });
    const leaf = await issueCertificate({ ca: stranger, profile: 'client', commonName: 'mallory' });
    await writeFile(join(dir, 'mallory.crt'), leaf.certPem);
    await writeFile(join(dir, 'mallory.key'), leaf.keyPem, { mode: 0o600 });
    const args = tlsArgs();
    args[args.indexOf('--cert') + 1] = join(dir, 'mallory.crt');
    args[args.indexOf('--key') + 1] = join(dir, 'mallory.key');
    const exit = await runCli(['sub', ...args, '-t', uniqueTopic('mallory')]);
    assertOneErrorLine(exit, /TLS handshake with .* failed/);
  });

  test('TLS is the default: without --plain a plain-TCP port fails with a hint', async () => {
    const exit = await runCli(['pub', '-h', '127.0.0.1', '-p', String(broker.plainPort), '--cafile', pki.caCert, '-t', uniqueTopic('default-tls'), '-m', 'x']);
    assertOneErrorLine(exit, /127\.0\.0\.1:\d+.*use --plain/);
  });

  test('CONNACK refusal prints the reason code name (MQTT 5 and 3.1.1)', async () => {
    const deny = ['-h', '127.0.0.1', '-p', String(broker.denyPort), '--plain'];
    const v5 = await runCli(['pub', ...deny, '-t', uniqueTopic('deny'), '-m', 'x']);
    assertOneErrorLine(v5, /refused the connection: not authorized \(0x87\)/);
    const v3 = await runCli(['sub', ...deny, '-V', '311', '-t', uniqueTopic('deny')]);
    assertOneErrorLine(v3, /refused the connection: not authorized \(0x05\)/);
  });

  test('a publish the broker refuses (MQTT 5 PUBACK/PUBREC 0x87) is a one-line error', async () => {
    const acl = ['-h', '127.0.0.1', '-p', String(broker.aclPort), '--plain'];
    // MQTT 5: PUBACK / PUBREC carry 0x87.
    for (const qos of ['1', '2']) {
      const pub = await runCli(['pub', ...acl, '-t', 'cli/secret/x', '-m', 'x', '-q', qos]);
      assertOneErrorLine(pub, /the broker refused the publish to 'cli\/secret\/x': not authorized \(0x87\)/);
    }
    // Mosquitto 2's acl_file grants every SUBSCRIBE and filters at delivery, so SUBACK
    // refusals are not exercised here.
  });

  test('SIGINT ends sub cleanly with exit 0', async () => {
    const sub = cli(['sub', ...tlsArgs(), '-t', uniqueTopic('sigint'), '-d']);
    await sub.waitFor('stderr', /received SUBACK/, 'the SUBACK of sub');
    sub.proc.kill('SIGINT');
    const exit = await sub.exited();
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /sending DISCONNECT/);
  });

  test('connection refused: one-line error, non-zero exit', async () => {
    const closed = await freePort();
    const exit = await runCli(['sub', '-h', '127.0.0.1', '-p', String(closed), '--plain', '-t', 'a']);
    assertOneErrorLine(exit, new RegExp(`connection refused by 127\\.0\\.0\\.1:${closed}`));
  });

  test('usage errors: missing -t, invalid QoS, no payload, missing file, --plain with TLS flags', async () => {
    assertOneErrorLine(await runCli(['sub', ...plainArgs()]), /required option '-t, --topic <filter>' not specified/);
    assertOneErrorLine(await runCli(['pub', ...plainArgs(), '-m', 'x']), /required option '-t, --topic <topic>' not specified/);
    assertOneErrorLine(await runCli(['pub', ...plainArgs(), '-t', 'a', '-m', 'x', '-q', '3']), /QoS must be 0, 1 or 2/);
    assertOneErrorLine(await runCli(['sub', ...plainArgs(), '-t', 'a', '-q', 'two']), /QoS must be 0, 1 or 2/);
    assertOneErrorLine(await runCli(['pub', ...plainArgs(), '-t', 'a']), /exactly one of -m\/--message, -f\/--file or -s\/--stdin/);
    assertOneErrorLine(
      await runCli(['pub', ...plainArgs(), '-t', 'a', '-f', join(dir, 'does-not-exist')]),
      /cannot read message file '.*does-not-exist': no such file or directory/,
    );
    assertOneErrorLine(
      await runCli(['pub', ...tlsArgs().slice(0, 4), '--cafile', join(dir, 'no-ca.pem'), '-t', 'a', '-m', 'x']),
      /cannot read --cafile file '.*no-ca\.pem': no such file or directory/,
    );
    assertOneErrorLine(await runCli(['pub', ...plainArgs(), '--cafile', pki.caCert, '-t', 'a', '-m', 'x']), /--plain cannot be combined with --cafile/);
    assertOneErrorLine(await runCli(['sub', ...plainArgs(), '-t', 'a/#/b']), /invalid topic filter/);
    assertOneErrorLine(await runCli(['pub', ...plainArgs(), '-t', 'a/+', '-m', 'x']), /invalid topic name/);
  });

  test('-W: a subscriber that receives nothing exits non-zero after the timeout', async () => {
    const started = Date.now();
    const exit = await runCli(['sub', ...tlsArgs(), '-t', uniqueTopic('quiet'), '-W', '1']);
    const elapsed = Date.now() - started;
    assertOneErrorLine(exit, /timed out after 1 s/);
    assert.equal(exit.code, TIMEOUT_EXIT);
    assert.ok(elapsed >= 1000, `exited after ${elapsed} ms, before the timeout`);
  });

  test('--help works, and -h is the host', async () => {
    const help = await runCli(['pub', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /-h, --host <host>/);
    assert.match(help.stdout, /--help\s+display help/);
    assert.doesNotMatch(help.stdout, /-h, --help/);
  });
});
