/**
 * The nats-server of a `--cluster` bench run: one JetStream node on 127.0.0.1, a port that
 * was free a moment ago, a fresh store directory. Owns: starting it (ready when a client
 * gets JetStream account info, with a deadline), its CPU time and RSS from /proc, what the
 * message stream holds (JetStream's stream info), its store's size on disk and the slow
 * consumers it reported (messages it dropped), and
 * stopping it (SIGTERM, then SIGKILL) with its directory removed. Must not: configure
 * anything in it (the Bastion nodes create their stream and buckets), or outlive the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort } from './brokers.js';
import { processCpuMs, processRssKb } from './proc-tree.js';
import { sleep } from './sleep.js';

/** Debian's nats-server (2.9.10 on the bench machine); BENCH_NATS_SERVER overrides it. */
export const NATS_SERVER_BIN = process.env.BENCH_NATS_SERVER ?? '/usr/sbin/nats-server';

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;
const LOG_TAIL_BYTES = 4096;
/** Start attempts when another process takes the port between freePort() and the bind. */
const PORT_ATTEMPTS = 3;

export function natsServerAvailable(): string | null {
  return existsSync(NATS_SERVER_BIN) ? null : `${NATS_SERVER_BIN} not installed`;
}

/** What a JetStream stream held when asked. */
export interface StreamState {
  messages: number;
  bytes: number;
}

/** Total size of the regular files under `dir` (the JetStream store on disk). */
function diskBytes(dir: string): number {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) total += diskBytes(path);
    else if (e.isFile()) {
      try {
        total += statSync(path).size;
      } catch {
        // Removed meanwhile (a compacted block).
      }
    }
  }
  return total;
}

export class NatsServer {
  private logTail = '';
  private partial = '';
  /** "Slow Consumer Detected" lines it printed: it dropped messages for a client that did not read fast enough. */
  slowConsumerReports = 0;
  private exitDescription: string | null = null;
  readonly exited: Promise<string>;

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly port: number,
    private readonly dir: string,
  ) {
    const keep = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      this.logTail = (this.logTail + text).slice(-LOG_TAIL_BYTES);
      const lines = (this.partial + text).split('\n');
      this.partial = (lines.pop() ?? '').slice(-LOG_TAIL_BYTES);
      this.slowConsumerReports += lines.filter((l) => /slow consumer/i.test(l)).length;
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitDescription = `nats-server exited (${signal ?? `code ${code ?? '?'}`})`;
        resolve(this.exitDescription);
      });
    });
  }

  /** `nats-server -js -a 127.0.0.1 -p <free> -sd <fresh dir>`, ready when JetStream answers. */
  static async start(): Promise<NatsServer> {
    const dir = await mkdtemp(join(tmpdir(), 'bench-nats-'));
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawn(NATS_SERVER_BIN, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, 'js')], { stdio: ['ignore', 'pipe', 'pipe'] });
      const spawned = await new Promise<Error | null>((resolve) => {
        child.once('spawn', () => resolve(null));
        child.once('error', (e) => resolve(e));
      });
      if (spawned !== null || child.pid === undefined) {
        await rm(dir, { recursive: true, force: true });
        throw new Error(`could not start ${NATS_SERVER_BIN}: ${spawned?.message ?? 'no pid'}`);
      }
      const server = new NatsServer(child, child.pid, port, dir);
      try {
        await server.waitReady();
        return server;
      } catch (e) {
        await server.stop(false);
        if (attempt < PORT_ATTEMPTS && /address already in use/i.test(server.logTail)) continue;
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.exitDescription === null;
  }

  /** The last lines it printed, on one line. */
  log(): string {
    return this.logTail.trim().split('\n').slice(-4).join(' | ') || '(no output)';
  }

  private async client(): Promise<NatsConnection> {
    return connect({ servers: this.url, timeout: 1000, maxReconnectAttempts: 0, name: 'bench' });
  }

  /** Retries a JetStream request until it is answered; each attempt is a real request. */
  private async waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last: unknown = null;
    for (;;) {
      if (!this.alive) throw new Error(`${this.exitDescription ?? 'nats-server exited'} before JetStream answered: ${this.log()}`);
      try {
        const nc = await this.client();
        try {
          await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
          return;
        } finally {
          await nc.close();
        }
      } catch (e) {
        last = e;
      }
      if (Date.now() > deadline) throw new Error(`nats-server on port ${this.port}: JetStream did not answer within ${READY_TIMEOUT_MS} ms (${(last as Error | null)?.message ?? '?'}): ${this.log()}`);
      await sleep(50);
    }
  }

  cpuMs(): number | null {
    return processCpuMs(this.pid);
  }

  rssKb(): number | null {
    return processRssKb(this.pid);
  }

  /** Messages and bytes in the stream (JetStream stream info), or null when it does not exist. */
  async streamState(name: string): Promise<StreamState | null> {
    const nc = await this.client();
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      const info = await jsm.streams.info(name);
      return { messages: info.state.messages, bytes: info.state.bytes };
    } catch (e) {
      if (/stream not found/i.test((e as Error).message)) return null;
      throw e;
    } finally {
      await nc.close();
    }
  }

  /** Bytes of every file in the JetStream store directory (streams and KV buckets, indexes included). */
  storeDiskBytes(): number {
    return diskBytes(join(this.dir, 'js'));
  }

  /** SIGTERM, then SIGKILL after 3 s; removes the store unless `removeDir` is false. */
  async stop(removeDir = true): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const timer = (ms: number): Promise<string> => new Promise((r) => setTimeout(() => r('timeout'), ms).unref());
      if ((await Promise.race([this.exited, timer(STOP_TIMEOUT_MS)])) === 'timeout' && this.alive) {
        this.child.kill('SIGKILL');
        await Promise.race([this.exited, timer(STOP_TIMEOUT_MS)]);
      }
    }
    if (removeDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** For a signal handler: kill now, no waiting. */
  killNow(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}
