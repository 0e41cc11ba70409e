/**
 * `bastion pub` and `bastion sub` against Bastion itself over mutual TLS, run as the
 * installed command would run (dist/src/cli/main.js), for MQTT 5 and 3.1.1; and a refused
 * subscription ends `sub` with one line and a non-zero exit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';

const MAIN = 'dist/src/cli/main.js';

function tlsArgs(b: TestBroker): string[] {
  const c = b.pki.clients.client1!;
  return ['-h', 'localhost', '-p', String(b.tlsPort), '--cafile', b.pki.caCert, '--cert', c.cert, '--key', c.key];
}

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Run = { child, stdout: '', stderr: '', exited: Promise.resolve(0) };
  child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
  r.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  return r;
}

/** Resolves when `text` appears on the run's stderr; fails after a timeout. */
function waitForStderr(r: Run, text: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${text}" on stderr: ${r.stderr}`)), timeoutMs);
    const check = (): void => {
      if (r.stderr.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    };
    r.child.stderr!.on('data', check);
    check();
  });
}

for (const version of ['5', '311'] as const) {
  test(`bastion sub receives what bastion pub sends through Bastion over mTLS (MQTT ${version})`, { timeout: 30_000 }, async () => {
    const broker = await startTestBroker();
    try {
      const sub = run(['sub', ...tlsArgs(broker), '-V', version, '-t', 'cli/#', '-v', '-C', '1', '-q', '1', '-d']);
      await waitForStderr(sub, 'SUBACK');
      const pub = run(['pub', ...tlsArgs(broker), '-V', version, '-t', 'cli/hello', '-m', 'from bastion pub', '-q', '1']);
      assert.equal(await pub.exited, 0, pub.stderr);
      assert.equal(await sub.exited, 0, sub.stderr);
      assert.equal(sub.stdout, 'cli/hello from bastion pub\n');
    } finally {
      await broker.stop();
    }
  });
}

test('bastion sub to a filter the broker refuses exits non-zero with one readable line', { timeout: 30_000 }, async () => {
  const broker = await startTestBroker();
  try {
    const sub = run(['sub', ...tlsArgs(broker), '-t', '$SYS/#', '-C', '1']);
    const code = await sub.exited;
    assert.notEqual(code, 0);
    const lines = sub.stderr.trim().split('\n');
    assert.equal(lines.length, 1, sub.stderr);
    assert.match(lines[0]!, /not authorized \(0x87\)/);
  } finally {
    await broker.stop();
  }
});
