/**
 * Real nats-server processes for cluster tests (issue 12): a single JetStream node and a
 * 3-node JetStream cluster, on 127.0.0.1 only, on ports that were free a moment ago, each
 * with its own temporary store. Readiness is a client retry loop with a deadline (the
 * single node: JetStream answers; the cluster: an R3 stream can be created), never a
 * sleep. Nodes can be killed with -9 by pid and restarted on the same ports and store.
 * Optional user/password authorization (`authorization { user, password }` in the config
 * file) lets tests prove that credentials are required; a single node can also require TLS. Every process is started through
 * test/integration/support.ts's `Proc`, so it is tracked and `stop()` kills it.
 * Must not: be imported by src/ (test-only).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Proc } from '../integration/support.js';

/** Debian's nats-server (2.9.10); NATS_SERVER overrides it. */
export const NATS_SERVER = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';

export interface NatsAuth {
  user: string;
  password: string;
}

export interface NatsNode {
  /** server_name (`n1`…), or `single`. */
  readonly name: string;
  readonly port: number;
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  /** The cluster route port (0 for a single node). */
  readonly routePort: number;
  /** The monitoring (HTTP) port on 127.0.0.1, when asked for; else 0 (off). */
  readonly monitorPort: number;
  readonly configFile: string;
  proc: Proc;
}

/** `n` distinct loopback ports that were free a moment ago (all held open together, then closed). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolvePromise, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => resolvePromise(srv));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** A NATS config string literal. */
function q(s: string): string {
  return JSON.stringify(s);
}

function authBlock(auth: NatsAuth | undefined): string {
  return auth === undefined ? '' : `authorization { user: ${q(auth.user)}, password: ${q(auth.password)} }\n`;
}

function spawnNode(node: Omit<NatsNode, 'proc'>, args: string[]): NatsNode {
  const proc = Proc.spawn(NATS_SERVER, args, { label: `nats-server ${node.name} :${node.port}` });
  return { ...node, proc };
}

/**
 * Retries `probe` until it succeeds or `deadline` (a Date.now() value) passes; fails at once
 * when one of `procs` has exited (with its output). Attempts are spaced by `gapMs`, a
 * retry interval, not a wait for time to fix things: each attempt is a real request.
 */
async function retryUntil<T>(what: string, deadline: number, procs: Proc[], probe: () => Promise<T>, gapMs = 50): Promise<T> {
  let last: unknown;
  for (;;) {
    const dead = procs.find((p) => p.result !== null);
    if (dead !== undefined) throw new Error(`${dead.label} exited (code ${dead.result?.code}) before ${what}:\n${dead.stderr.slice(-1500)}`);
    try {
      return await probe();
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${(last as Error)?.message ?? String(last)}`);
    await new Promise((r) => setTimeout(r, gapMs));
  }
}

async function clientFor(urls: string[], auth: NatsAuth | undefined, timeoutMs = 1000, tls?: NatsTls): Promise<NatsConnection> {
  const tlsOpts = tls === undefined ? {} : { tls: { caFile: tls.ca, ...(tls.verifyClients !== undefined ? { certFile: tls.verifyClients.cert, keyFile: tls.verifyClients.key } : {}) } };
  return connect({ servers: urls, timeout: timeoutMs, maxReconnectAttempts: 0, ...tlsOpts, ...(auth !== undefined ? { user: auth.user, pass: auth.password } : {}) });
}

/**
 * TLS on the client port (files). With `verifyClients` the server requires a client
 * certificate signed by `ca`; the one given is what the readiness probe presents.
 */
export interface NatsTls {
  cert: string;
  key: string;
  ca: string;
  verifyClients?: { cert: string; key: string };
}

export interface StartOptions {
  auth?: NatsAuth;
  /** Single node only: TLS required on the client port. */
  tls?: NatsTls;
  /** Turn on the monitoring port (HTTP /varz, /connz…) on a free loopback port. */
  monitor?: boolean;
  /** Readiness deadline (default 10 s for a node, 15 s for the cluster). */
  readyTimeoutMs?: number;
}

export interface SingleNats {
  readonly node: NatsNode;
  readonly url: string;
  readonly dir: string;
  /** kill -9 of the server (by pid); resolves once it has exited. */
  kill(): Promise<void>;
  /** Starts a killed server again (same port, same store) and waits until JetStream answers. */
  restart(readyTimeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** True when nats-server said its port was taken (another process won the race for it). */
function portRace(p: Proc): boolean {
  return p.result !== null && /address already in use/i.test(p.stderr);
}

/**
 * One JetStream node: `nats-server -js -a 127.0.0.1 -p <free> -sd <tmp>` (plus `-m <free>`
 * with `monitor`, and `-c` a file with the authorization block with `auth`). Ready when a
 * client gets JetStream account info.
 */
export async function startNatsServer(opts: StartOptions = {}): Promise<SingleNats> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-nats-'));
  for (let attempt = 1; ; attempt++) {
    const [port, monitorPort] = await freePorts(2);
    const configFile = join(dir, 'extra.conf');
    const args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, 'js')];
    // Monitoring is off unless asked for, then on loopback only (a config line: the -m flag has no host).
    const tls = opts.tls === undefined ? '' : `tls { cert_file: ${q(opts.tls.cert)}, key_file: ${q(opts.tls.key)}, ca_file: ${q(opts.tls.ca)}, verify: ${opts.tls.verifyClients !== undefined} }\n`;
    const extra = authBlock(opts.auth) + tls + (opts.monitor === true ? `http: 127.0.0.1:${monitorPort}\n` : '');
    if (extra !== '') {
      writeFileSync(configFile, extra);
      args.push('-c', configFile);
    }
    const node = spawnNode({ name: 'single', port: port!, url: `nats://127.0.0.1:${port}`, routePort: 0, monitorPort: opts.monitor === true ? monitorPort! : 0, configFile }, args);
    try {
      await waitSingleReady(node, opts, Date.now() + (opts.readyTimeoutMs ?? 10000));
    } catch (err) {
      await node.proc.stop();
      if (portRace(node.proc) && attempt < 3) continue;
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      node,
      url: node.url,
      dir,
      async kill() {
        node.proc.kill('SIGKILL');
        await node.proc.exited;
      },
      async restart(readyTimeoutMs = 10000) {
        if (node.proc.result === null) throw new Error('nats-server is still running');
        node.proc = Proc.spawn(NATS_SERVER, args, { label: `nats-server single :${node.port} (restarted)` });
        await waitSingleReady(node, opts, Date.now() + readyTimeoutMs);
      },
      async stop() {
        await node.proc.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

async function waitSingleReady(node: NatsNode, opts: StartOptions, deadline: number): Promise<void> {
  await retryUntil(`JetStream on ${node.url}`, deadline, [node.proc], async () => {
    const nc = await clientFor([node.url], opts.auth, 1000, opts.tls);
    try {
      await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
    } finally {
      await nc.close();
    }
  });
}

export interface NatsCluster {
  readonly nodes: NatsNode[];
  /** Every node's client URL. */
  readonly urls: string[];
  readonly dir: string;
  readonly auth: NatsAuth | undefined;
  /** The node whose server_name is `name`. */
  node(name: string): NatsNode;
  /** kill -9 of the node's process (by pid); resolves once it has exited. */
  kill(name: string): Promise<void>;
  /** Starts a killed node again (same ports, same store) and waits until it serves JetStream requests. */
  restart(name: string, readyTimeoutMs?: number): Promise<void>;
  /** Kills every node and removes the temporary directory. */
  stop(): Promise<void>;
}

/**
 * Three JetStream nodes `n1`…`n3` on 127.0.0.1, each with a config file in a temporary
 * directory (server_name, listen, jetstream store_dir, cluster name/listen/routes). Ready
 * when an R3 stream can be created (then deleted again).
 */
export async function startNatsCluster(opts: StartOptions = {}): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'bastion-nats-cluster-'));
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(9);
    const names = ['n1', 'n2', 'n3'];
    const routes = names.map((_, i) => `nats-route://127.0.0.1:${ports[3 + i]}`);
    const nodes = names.map((name, i) => {
      const port = ports[i]!;
      const routePort = ports[3 + i]!;
      const monitorPort = opts.monitor === true ? ports[6 + i]! : 0;
      const store = join(dir, name);
      mkdirSync(store, { recursive: true });
      const configFile = join(dir, `${name}.conf`);
      writeFileSync(
        configFile,
        `server_name: ${name}\n` +
          `listen: 127.0.0.1:${port}\n` +
          (monitorPort !== 0 ? `http: 127.0.0.1:${monitorPort}\n` : '') +
          `jetstream { store_dir: ${q(store)}, max_memory_store: 64MB, max_file_store: 1GB }\n` +
          `cluster {\n  name: bastion-test\n  listen: 127.0.0.1:${routePort}\n  routes: [ ${routes.join(', ')} ]\n}\n` +
          authBlock(opts.auth),
      );
      return spawnNode({ name, port, url: `nats://127.0.0.1:${port}`, routePort, monitorPort, configFile }, ['-c', configFile]);
    });
    const cluster = makeCluster(nodes, dir, opts.auth);
    try {
      await waitClusterReady(cluster, Date.now() + (opts.readyTimeoutMs ?? 15000));
    } catch (err) {
      await Promise.all(nodes.map((n) => n.proc.stop()));
      if (nodes.some((n) => portRace(n.proc)) && attempt < 3) continue;
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return cluster;
  }
}

async function waitClusterReady(cluster: NatsCluster, deadline: number): Promise<void> {
  const probe = `READY_${process.pid}_${Date.now()}`;
  await retryUntil('an R3 stream create on the 3-node cluster', deadline, cluster.nodes.map((n) => n.proc), async () => {
    const nc = await clientFor(cluster.urls, cluster.auth);
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      await jsm.streams.add({ name: probe, subjects: [`ready.${probe}`], num_replicas: 3 });
      await jsm.streams.delete(probe);
    } finally {
      await nc.close();
    }
  }, 100);
}

function makeCluster(nodes: NatsNode[], dir: string, auth: NatsAuth | undefined): NatsCluster {
  const byName = (name: string): NatsNode => {
    const n = nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no NATS node ${name}`);
    return n;
  };
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    dir,
    auth,
    node: byName,
    async kill(name) {
      const n = byName(name);
      n.proc.kill('SIGKILL');
      await n.proc.exited;
    },
    async restart(name, readyTimeoutMs = 15000) {
      const n = byName(name);
      if (n.proc.result === null) throw new Error(`NATS node ${name} is still running`);
      n.proc = Proc.spawn(NATS_SERVER, ['-c', n.configFile], { label: `nats-server ${n.name} :${n.port} (restarted)` });
      // Ready when this very node answers a JetStream request (it has rejoined the meta group).
      await retryUntil(`JetStream on restarted ${name}`, Date.now() + readyTimeoutMs, [n.proc], async () => {
        const nc = await clientFor([n.url], auth);
        try {
          await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
        } finally {
          await nc.close();
        }
      }, 100);
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.proc.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
