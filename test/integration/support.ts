/**
 * Helpers for integration tests that drive real processes: spawn a command and wait on
 * its output or exit (never sleep), find a free loopback port, start `bastion serve` as a
 * child process, and collect MQTT.js messages. Every wait has a timeout, and every
 * process started here is tracked so a test can kill what it started (by pid).
 * Must not: be imported by src/ (test-only).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';

/** The repository root (this file runs from dist/test/integration/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The compiled CLI entry point. */
export const BASTION_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
/** Python fixtures (source tree; they are not compiled). */
export const PAHO_DIR = join(REPO_ROOT, 'test', 'fixtures', 'paho');

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Rejects with `what` after `ms` unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A list that fills up over time and can be waited on: `waitFor(pred)` resolves as soon
 * as the items satisfy `pred`, or fails after the timeout with what it had.
 */
export class Inbox<T> {
  readonly items: T[] = [];
  private waiters = new Set<() => void>();

  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  }

  /** Wakes waiters without adding an item (e.g. when the source closed). */
  poke(): void {
    for (const w of [...this.waiters]) w();
  }

  waitFor(pred: (items: T[]) => boolean, timeoutMs: number, what: string): Promise<T[]> {
    if (pred(this.items)) return Promise.resolve(this.items);
    return new Promise((resolvePromise, reject) => {
      const check = (): void => {
        let ok: boolean;
        try {
          ok = pred(this.items);
        } catch (err) {
          done();
          reject(err as Error);
          return;
        }
        if (ok) {
          done();
          resolvePromise(this.items);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; have ${this.items.length}: ${JSON.stringify(this.items.slice(-5)).slice(0, 800)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  /** Waits until at least `n` items are there. */
  waitForCount(n: number, timeoutMs: number, what: string): Promise<T[]> {
    return this.waitFor((items) => items.length >= n, timeoutMs, what);
  }
}

const live = new Set<Proc>();

/** A child process whose output is collected and can be waited on. */
export class Proc {
  stdout = '';
  stderr = '';
  result: ProcResult | null = null;
  readonly exited: Promise<ProcResult>;
  private readonly changes = new Inbox<void>();

  constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    live.add(this);
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      this.stdout += d;
      this.changes.poke();
    });
    child.stderr?.on('data', (d: string) => {
      this.stderr += d;
      this.changes.poke();
    });
    this.exited = new Promise((resolvePromise) => {
      child.on('error', (err) => {
        this.stderr += `spawn error: ${err.message}\n`;
      });
      child.on('close', (code, signal) => {
        live.delete(this);
        this.result = { code, signal, stdout: this.stdout, stderr: this.stderr };
        this.changes.poke();
        resolvePromise(this.result);
      });
    });
  }

  static spawn(cmd: string, args: string[], opts: SpawnOptions & { label?: string } = {}): Proc {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    return new Proc(child, opts.label ?? `${cmd} ${args.join(' ')}`);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private describe(): string {
    return `${this.label}\n--- stdout ---\n${this.stdout.slice(-2000)}\n--- stderr ---\n${this.stderr.slice(-2000)}`;
  }

  /** Resolves with the first match of `re` in the stream; fails if the process exits first. */
  async waitForOutput(re: RegExp, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    try {
      await this.changes.waitFor(
        () => {
          match = (stream === 'stdout' ? this.stdout : this.stderr).match(re);
          if (match !== null) return true;
          if (this.result !== null) throw new Error(`process exited (code ${this.result.code}, signal ${this.result.signal}) before printing ${re}`);
          return false;
        },
        timeoutMs,
        `${re} on ${stream}`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.describe()}`);
    }
    return match!;
  }

  /** Waits for the exit; after the timeout the process is killed and the wait fails. */
  async waitExit(timeoutMs: number): Promise<ProcResult> {
    try {
      return await withTimeout(this.exited, timeoutMs, `exit of ${this.label}`);
    } catch (err) {
      this.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n${this.describe()}`);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.result === null && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, signal);
      } catch {
        /* already gone */
      }
    }
  }

  /** Kills (SIGKILL) if still running and waits for the exit. */
  async stop(): Promise<void> {
    if (this.result !== null) return;
    this.kill('SIGKILL');
    await this.exited;
  }
}

/** Runs a command to completion (killed and failed after `timeoutMs`). */
export function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number; input?: string } = {}): Promise<ProcResult> {
  const p = Proc.spawn(cmd, args, opts);
  p.child.stdin?.end(opts.input ?? '');
  return p.waitExit(opts.timeoutMs ?? 15000);
}

/** Kills (SIGKILL) every process started through this module that is still running. */
export async function killAllProcs(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

/** A loopback port that was free a moment ago (listen on 0, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolvePromise(port));
    });
  });
}

export interface BrokerProcess {
  proc: Proc;
  port: number;
}

/** The line `bastion serve` prints once a listener accepts connections. */
export const LISTENING_LINE = /Bastion listening on (mqtts?|wss?):\/\/([^\s:]+):(\d+)/;

/** Starts `node dist/src/cli/main.js serve <args>` and waits for its listening line (on stderr, with the logs). */
export async function startBrokerProcess(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<BrokerProcess> {
  const proc = Proc.spawn(process.execPath, [BASTION_MAIN, 'serve', ...args], { cwd: opts.cwd ?? REPO_ROOT, label: `bastion serve ${args.join(' ')}` });
  const m = await proc.waitForOutput(LISTENING_LINE, opts.timeoutMs ?? 15000, 'stderr');
  return { proc, port: Number(m[3]) };
}

/** A received MQTT.js message. */
export interface Received {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/**
 * Connects MQTT.js with automatic reconnect off, failing after `timeoutMs`. `setup` runs
 * before the CONNECT goes out: attach message listeners there when the session may hold
 * queued messages (they can arrive in the same read as the CONNACK).
 */
export async function connectMqtt(url: string, opts: IClientOptions, timeoutMs = 5000, setup?: (client: MqttClient) => void): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: timeoutMs, ...opts });
  setup?.(client);
  try {
    await withTimeout(
      new Promise<void>((resolvePromise, reject) => {
        client.once('connect', () => resolvePromise());
        client.once('error', reject);
        client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
      }),
      timeoutMs,
      `CONNACK from ${url}`,
    );
  } catch (err) {
    client.end(true);
    throw err;
  }
  return client;
}

/** Collects every message a client receives from now on. */
export function inboxOf(client: MqttClient): Inbox<Received> {
  const inbox = new Inbox<Received>();
  client.on('message', (topic, payload, packet) => inbox.push({ topic, payload: payload.toString(), packet }));
  return inbox;
}

/** Ends a client (forcefully), waiting at most a second. */
export async function endQuietly(client: MqttClient | undefined): Promise<void> {
  if (client === undefined) return;
  await withTimeout(client.endAsync(true), 1000, 'client end').catch(() => undefined);
}

/** Resolves when `client` emits `event` (first argument), within `timeoutMs`. */
export function nextEvent<T = unknown>(client: MqttClient, event: 'disconnect' | 'close' | 'connect' | 'error' | 'offline', timeoutMs: number): Promise<T> {
  return withTimeout(
    new Promise<T>((resolvePromise) => {
      client.once(event, (arg: unknown) => resolvePromise(arg as T));
    }),
    timeoutMs,
    `MQTT.js '${event}' event`,
  );
}

/**
 * Publishes at QoS 1 to `topic` and resolves with the PUBACK's reason code (a refusal
 * rejects MQTT.js's publish callback; the code is on the packet), within `timeoutMs`.
 */
export function pubackCode(client: MqttClient, topic: string, timeoutMs: number): Promise<number> {
  const ack = new Promise<number>((resolvePromise) => {
    const on = (p: Packet): void => {
      if (p.cmd !== 'puback') return;
      client.off('packetreceive', on);
      resolvePromise(p.reasonCode ?? 0);
    };
    client.on('packetreceive', on);
  });
  client.publish(topic, 'x', { qos: 1 }, () => undefined);
  return withTimeout(ack, timeoutMs, `PUBACK for ${topic}`);
}

/** A config file in `dir` for a child-process broker with one plaintext anonymous listener. */
export function writePlainConfig(dir: string, port: number, extra: string[] = []): string {
  const path = join(dir, 'bastion.yaml');
  writeFileSync(
    path,
    [
      `dataDir: ${JSON.stringify(join(dir, 'data'))}`,
      'listeners:',
      '  - name: plain',
      '    protocol: mqtt',
      '    host: 127.0.0.1',
      `    port: ${port}`,
      '    insecure: true',
      '    allowAnonymous: true',
      'log:',
      '  level: warn',
      // Generic broker tests publish anywhere: they state allow-all (the default would deny).
      ...(extra.some((l) => l.startsWith('authz:')) ? [] : ['authz:', '  policy: allow-all-INSECURE']),
      ...extra,
      '',
    ].join('\n'),
  );
  return path;
}

/** Resolves once `check()` holds (checked every 20 ms, for state another process or node changes); rejects after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
