/**
 * The brokers under test as child processes. Owns: generating an equivalent configuration
 * for Bastion (YAML, see src/core/config.ts) and Mosquitto (mosquitto.conf), starting the
 * process on free loopback ports, waiting until it accepts TCP connections, sampling its
 * RSS and CPU time from /proc, and stopping it. A Bastion cluster node (`--cluster` runs)
 * gets a `cluster` section and `serve --workers N`: its figures cover the primary and
 * every worker. Must not: leave a process behind (every start has a deadline, every stop
 * ends in SIGKILL, of a node's workers too).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { input } from 'zod';
import type { configSchema } from '../src/core/config.js';
import type { BenchPki } from './certs.js';
import { descendants, processCpuMs, processRssKb, treeCpuParts, treeRssKb } from './proc-tree.js';

export type BrokerKind = 'bastion' | 'mosquitto';

/**
 * Bastion's `limits` section in a run: `defaults` (no section: what an operator gets),
 * `raised` (every limit on, every rate and cap far above what the bench offers, so the
 * checks run and never bite: their cost alone), `off` (`limits.enabled: false`).
 */
export type LimitsMode = 'defaults' | 'raised' | 'off';
export const LIMITS_MODES: readonly LimitsMode[] = ['defaults', 'raised', 'off'];

/** Far above any load this bench offers (per client or per address, per second). */
const UNREACHABLE_RATE = { perSecond: 1e9, burst: 1e9 };

/** Per-address connection limits far above the bench's connect loops (its clients all come from 127.0.0.1). */
const UNREACHABLE_CONNECTIONS = { perIpMax: 1_000_000, perIpRate: UNREACHABLE_RATE };

function limitsSection(mode: LimitsMode, raiseConnections: boolean): BastionConfigInput['limits'] {
  switch (mode) {
    case 'defaults':
      return raiseConnections ? { connections: UNREACHABLE_CONNECTIONS } : undefined;
    case 'off':
      return { enabled: false };
    case 'raised':
      return {
        enabled: true,
        connections: UNREACHABLE_CONNECTIONS,
        client: { publishRate: UNREACHABLE_RATE, bandwidth: UNREACHABLE_RATE },
        flapping: { maxConnects: 1_000_000_000 },
        slowClient: { maxWriteBufferBytes: 1024 * 1024 * 1024, maxCongestedSeconds: 3600 },
      };
    default: {
      const unreachable: never = mode;
      return unreachable;
    }
  }
}

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';
export const BASTION_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/**
 * Per-client budgets, Bastion's defaults. Mosquitto gets the same queue; its inflight
 * window is unlimited instead (see mosquittoConfig).
 */
export const MAX_INFLIGHT = 100;
export const MAX_QUEUED = 10_000;

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 3_000;
const LOG_TAIL_BYTES = 4096;

export interface BrokerOptions {
  kind: BrokerKind;
  /** Bastion: persistence.enabled. Mosquitto always runs with its default (no persistence). */
  persistence: boolean;
  /** Without a PKI only the plain listener is configured. */
  pki: BenchPki | null;
  /** Bastion: the limits section (default: the config defaults). */
  limits?: LimitsMode;
  /**
   * Bastion, limits `defaults`: raise the per-address connection limits (count and rate,
   * default 20/s) above the load, every other limit left at its default. For scenarios
   * whose figure is the cost of connection setup, which the rate limit would otherwise cap
   * at 20 conn/s from 127.0.0.1 (refusing the rest at accept).
   */
  raiseConnectionLimits?: boolean;
  /**
   * Bastion: `defender.detect.enabled` (issue 15's behaviour detection). Absent: the
   * config default (on); false: off, for the detection-on/off throughput comparison.
   */
  detect?: boolean;
  /** Bastion: a cluster node (issue 12) on this nats-server, run as `serve --workers <workers>`. */
  cluster?: ClusterNodeOptions;
  /**
   * Bastion: `serve -c <path>` with a config the caller wrote (the provisioning bench: its
   * own PKI, listener and templates) instead of the generated one; `port` (from
   * freePort()) is where it listens, whatever the protocol, and is reported as `tcpPort`.
   * `persistence`, `pki` and `limits` are then not used.
   */
  configFile?: { path: string; port: number };
}

export interface ClusterNodeOptions {
  natsUrl: string;
  /** cluster.nodeId; the workers are `<nodeId>-w1`… */
  nodeId: string;
  workers: number;
}

/** Finds a free loopback port by listening on port 0 and closing again. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

function tryConnect(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

type BastionConfigInput = input<typeof configSchema>;

/**
 * The key-exchange groups of Bastion's bench mTLS listener: the hybrid post-quantum group
 * first, as Bastion's own default. OpenSSL picks the first of these the client sent a key
 * share for, so a client with X25519MLKEM768 and X25519 shares gets the hybrid.
 */
export const BASTION_TLS_GROUPS = 'X25519MLKEM768:X25519:P-256:P-384';

/** The listener's `tls` key and value that set BASTION_TLS_GROUPS, or null (see bastionGroupsSetting). */
type GroupsSetting = { key: string; value: string } | null;
let groupsSetting: Promise<GroupsSetting> | null = null;

/**
 * Which listener key, if any, this build of Bastion takes for BASTION_TLS_GROUPS: `groups`
 * (the current name), else `curves` (the old one) when it accepts the hybrid, else none
 * (the broker runs with its default groups; the runs report what was negotiated). Probed
 * against the built config schema, so the bench runs on builds with and without the key.
 */
function bastionGroupsSetting(): Promise<GroupsSetting> {
  groupsSetting ??= import('../src/core/tls-config.js').then(
    ({ tlsSchema }) => {
      for (const key of ['groups', 'curves']) {
        if (tlsSchema.safeParse({ cert: 'server.crt', key: 'server.key', [key]: BASTION_TLS_GROUPS }).success) return { key, value: BASTION_TLS_GROUPS };
      }
      return null;
    },
    () => null,
  );
  return groupsSetting;
}

function bastionConfig(dir: string, tcpPort: number, tlsPort: number | null, o: BrokerOptions, groups: GroupsSetting): BastionConfigInput {
  const listeners: BastionConfigInput['listeners'] = [
    { name: 'bench-tcp', protocol: 'mqtt', host: '127.0.0.1', port: tcpPort, insecure: true, allowAnonymous: true },
  ];
  if (o.pki !== null && tlsPort !== null) {
    listeners.push({
      name: 'bench-mtls',
      protocol: 'mqtts',
      host: '127.0.0.1',
      port: tlsPort,
      tls: { cert: o.pki.serverCert, key: o.pki.serverKey, ca: o.pki.caCert, clientCerts: 'required', ...(groups !== null ? { [groups.key]: groups.value } : {}) },
    });
  }
  const limits = limitsSection(o.limits ?? 'defaults', o.raiseConnectionLimits === true);
  return {
    dataDir: join(dir, 'data'),
    listeners,
    ...(limits !== undefined ? { limits } : {}),
    mqtt: { maxInflight: MAX_INFLIGHT, maxQueued: MAX_QUEUED },
    log: { level: 'warn' },
    persistence: { enabled: o.persistence },
    // Mosquitto runs without ACLs (allow_anonymous true): compare like with like. The rule
    // engine still runs (one rule, checked at publish and at every delivery).
    authz: { policy: 'allow-all-INSECURE' },
    ...(o.detect === false ? { defender: { detect: { enabled: false } } } : {}),
    ...(o.cluster !== undefined ? { cluster: { nats: { servers: [o.cluster.natsUrl] }, nodeId: o.cluster.nodeId, replicas: 1 } } : {}),
  };
}

function mosquittoConfig(tcpPort: number, tlsPort: number | null, o: BrokerOptions): string {
  const lines = [
    '# generated by bench/brokers.ts for one bench run',
    'user root',
    'persistence false',
    'allow_anonymous true',
    // 0 = unlimited. Mosquitto 2.0.11 releases a message queued behind a full inflight
    // window only when a new message arrives for that client, not when a PUBACK frees a
    // slot (maintainers: inflight-quota fixes in 2.0.13). A backlog formed in a burst then
    // never drains, and any loss-free load (ours keeps ≤ 5,000 deliveries outstanding)
    // throttles to an artefact. Unlimited gives Mosquitto its best case on these loads.
    'max_inflight_messages 0',
    `max_queued_messages ${MAX_QUEUED}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    '# Bastion sets TCP_NODELAY on every connection; without it Mosquitto stalls ~40 ms',
    '# (Nagle + delayed ACK) after TLS handshakes and on latency runs.',
    'set_tcp_nodelay true',
    '',
    `listener ${tcpPort} 127.0.0.1`,
    'protocol mqtt',
  ];
  if (o.pki !== null && tlsPort !== null) {
    lines.push('', `listener ${tlsPort} 127.0.0.1`, 'protocol mqtt', `cafile ${o.pki.caCert}`, `certfile ${o.pki.serverCert}`, `keyfile ${o.pki.serverKey}`, 'require_certificate true');
  }
  return `${lines.join('\n')}\n`;
}

export class BrokerProcess {
  /**
   * The TLS listener's key-exchange groups as configured: Bastion's `tls.groups` when this
   * build takes it, `(broker default)` otherwise; Mosquitto 2.0.11 has no such option.
   */
  serverGroups: string | null = null;
  private logTail = '';
  /** The output since the last complete line, and who waits for a line (waitForOutput). */
  private partialLine = '';
  private readonly lineWaiters: { re: RegExp; resolve: () => void }[] = [];
  private exitDescription: string | null = null;
  /** Resolves with a description when the process exits, for whatever reason. */
  readonly exited: Promise<string>;

  private constructor(
    readonly kind: BrokerKind,
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly tcpPort: number,
    readonly tlsPort: number | null,
    private readonly dir: string,
    /** `serve --workers N`: a primary with N worker processes. */
    readonly workers: number | null = null,
  ) {
    const keep = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      this.logTail = (this.logTail + text).slice(-LOG_TAIL_BYTES);
      if (this.lineWaiters.length === 0) return;
      const lines = (this.partialLine + text).split('\n');
      this.partialLine = (lines.pop() ?? '').slice(-LOG_TAIL_BYTES);
      for (const line of lines) {
        for (const w of this.lineWaiters.filter((x) => x.re.test(line))) {
          this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
          w.resolve();
        }
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitDescription = `${kind} exited (${signal ?? `code ${code ?? '?'}`})`;
        resolve(this.exitDescription);
      });
    });
  }

  static async start(o: BrokerOptions): Promise<BrokerProcess> {
    const dir = await mkdtemp(join(tmpdir(), `bench-${o.kind}-`));
    const own = o.kind === 'bastion' ? o.configFile : undefined;
    const tcpPort = own?.port ?? (await freePort());
    const tlsPort = o.pki !== null && own === undefined ? await freePort() : null;
    let child: ChildProcess;
    let serverGroups: string | null = null;
    if (o.kind === 'bastion') {
      let file = join(dir, 'bastion.yaml');
      if (own !== undefined) {
        file = own.path;
      } else {
        const groups = o.pki !== null ? await bastionGroupsSetting() : null;
        if (o.pki !== null) serverGroups = groups !== null ? `${groups.value} (tls.${groups.key})` : '(broker default)';
        await writeFile(file, stringify(bastionConfig(dir, tcpPort, tlsPort, o, groups)), { mode: 0o600 });
      }
      // BENCH_BASTION_NODE_ARGS lets an experiment pass V8/Node flags to the broker alone.
      const nodeArgs = (process.env.BENCH_BASTION_NODE_ARGS ?? '').split(' ').filter((a) => a.length > 0);
      const workersArgs = o.cluster !== undefined ? ['--workers', String(o.cluster.workers)] : [];
      child = spawn(process.execPath, [...nodeArgs, BASTION_MAIN, 'serve', '-c', file, ...workersArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    } else {
      const file = join(dir, 'mosquitto.conf');
      await writeFile(file, mosquittoConfig(tcpPort, tlsPort, o), { mode: 0o600 });
      child = spawn(MOSQUITTO_BIN, ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      if (o.pki !== null) serverGroups = '(OpenSSL default; mosquitto has no option)';
    }
    const spawned = await new Promise<Error | null>((resolve) => {
      child.once('spawn', () => resolve(null));
      child.once('error', (e) => resolve(e));
    });
    if (spawned !== null || child.pid === undefined) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`could not start ${o.kind}: ${spawned?.message ?? 'no pid'}`);
    }
    const workers = o.kind === 'bastion' && o.cluster !== undefined ? o.cluster.workers : null;
    const broker = new BrokerProcess(o.kind, child, child.pid, tcpPort, tlsPort, dir, workers);
    broker.serverGroups = serverGroups;
    // Registered before the start: the primary prints it once every worker has its listeners up.
    const allWorkers = workers !== null ? broker.waitForLine(/^Bastion running \d+ workers? /) : null;
    try {
      await broker.waitListening(tcpPort);
      if (tlsPort !== null) await broker.waitListening(tlsPort);
      if (allWorkers !== null) await broker.waitUntil(allWorkers, `all ${workers} workers listening`);
    } catch (e) {
      await broker.stop();
      throw e;
    }
    return broker;
  }

  private async waitListening(port: number): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exitDescription !== null) throw new Error(`${this.exitDescription} before listening: ${this.log()}`);
      if (await tryConnect(port, 500)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.kind} did not accept connections on port ${port} within ${START_TIMEOUT_MS} ms: ${this.log()}`);
  }

  /** Resolves when the broker prints a line matching `re` (from now on). */
  private waitForLine(re: RegExp): Promise<void> {
    return new Promise((resolve) => this.lineWaiters.push({ re, resolve }));
  }

  private async waitUntil(p: Promise<void>, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<string>((r) => {
      timer = setTimeout(() => r(`${this.kind} did not report ${what} within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    });
    const outcome = await Promise.race([p.then(() => null), this.exited.then((d) => `${d} before ${what}`), limit]).finally(() => clearTimeout(timer));
    if (outcome !== null) throw new Error(`${outcome}: ${this.log()}`);
  }

  get alive(): boolean {
    return this.exitDescription === null;
  }

  /** The last lines the broker printed, on one line. */
  log(): string {
    return this.logTail.trim().split('\n').slice(-6).join(' | ') || '(no output)';
  }

  /** Resident set size in KB, from /proc/<pid>/status (with --workers: primary and workers). */
  rssKb(): number | null {
    return this.workers !== null ? treeRssKb(this.pid) : processRssKb(this.pid);
  }

  /** User + system CPU time in ms, from /proc/<pid>/stat (all threads; with --workers: primary and workers). */
  cpuMs(): number | null {
    if (this.workers === null) return processCpuMs(this.pid);
    const parts = treeCpuParts(this.pid);
    return parts === null ? null : parts.reduce((sum, p) => sum + p.cpuMs, 0);
  }

  /**
   * With --workers: CPU ms of the primary and of each worker, labelled `<prefix>primary`,
   * `<prefix>w1`… (workers in ascending pid order, i.e. fork order until one is restarted).
   */
  cpuParts(prefix = ''): Record<string, number> {
    const parts = this.workers !== null ? treeCpuParts(this.pid) : null;
    if (parts === null) return {};
    return Object.fromEntries(parts.map((p, i) => [`${prefix}${i === 0 ? 'primary' : `w${i}`}`, p.cpuMs]));
  }

  async stop(): Promise<void> {
    if (this.alive) {
      // With --workers the primary forwards SIGTERM to its workers and waits for them.
      this.child.kill('SIGTERM');
      const timer = (ms: number): Promise<string> => new Promise((r) => setTimeout(() => r('timeout'), ms).unref());
      if ((await Promise.race([this.exited, timer(STOP_TIMEOUT_MS)])) === 'timeout' && this.alive) {
        this.killNow();
        await Promise.race([this.exited, timer(STOP_TIMEOUT_MS)]);
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** For a signal handler: kill now (with --workers, the workers first), no waiting. */
  killNow(): void {
    if (!this.alive) return;
    if (this.workers !== null) {
      for (const pid of descendants(this.pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    this.child.kill('SIGKILL');
  }
}

export function bastionAvailable(): string | null {
  return existsSync(BASTION_MAIN) ? null : `${BASTION_MAIN} not built yet`;
}

export function mosquittoAvailable(): string | null {
  return existsSync(MOSQUITTO_BIN) ? null : `${MOSQUITTO_BIN} not installed`;
}
