/**
 * `bastion serve --workers N|auto` (issue 12): N broker processes on one machine sharing
 * the listeners through node:cluster, made one broker by the config's cluster section
 * (NATS). Owns: the primary (the data directory lock for the whole set, forking, the
 * banner printed once, signal forwarding, restarting a crashed worker with a backoff and a
 * bound) and what a worker changes in the config it loaded (node id, data directory, which
 * worker runs the admin API and the PKI duties, its own audit JSONL file).
 * Must not: run a broker in the primary, or carry MQTT between workers (NATS does, through
 * src/cluster/: the primary only hands accepted sockets over).
 *
 * Listeners: node:cluster shares a listening socket among the workers that listen on the
 * same address and port (`port: 0` gives them all the same one). Round-robin scheduling:
 * the primary accepts and hands each connection to the next worker, so every core serves.
 */
import { PROVISIONING_DB_FILE } from '../provisioning/sqlite-provisioning-store.js';
import cluster, { type Worker } from 'node:cluster';
import { lstatSync, mkdirSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { NODE_ID_RE, resolveNodeId } from '../core/cluster-config.js';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { acquireDataDirLock } from '../server/data-dir-lock.js';
import type { LoadedConfig } from '../server/load-config.js';
import { ACL_STORE_FILE } from '../store/sqlite/acl-store.js';
import { ADMIN_DB_FILE } from '../store/sqlite/admin-store.js';
import { PENDING_CHANGES_DB_FILE } from '../store/sqlite/pending-changes-store.js';
import { USERS_DB_FILE } from '../store/sqlite/user-store.js';
import type { LogOutput } from './log-output.js';

/** Which worker a process is (1…N), set by the primary when it forks. */
const WORKER_ENV = 'BASTION_WORKER';
/** A worker that dies is restarted after 250 ms, then 0.5, 1, 2 s… (capped) while it keeps dying. */
const RESTART_BACKOFF_MS = 250;
const RESTART_BACKOFF_MAX_MS = 5000;
/** More deaths than this within a minute and a worker is left dead (the others keep serving). */
const MAX_RESTARTS_PER_MINUTE = 5;
const MINUTE_MS = 60_000;

/** What a worker tells the primary over the IPC channel. */
type WorkerMessage = { bastion: 'listening'; lines: string[] } | { bastion: 'failed'; message: string; code: string | null };

function isWorkerMessage(m: unknown): m is WorkerMessage {
  if (typeof m !== 'object' || m === null) return false;
  const v = m as Record<string, unknown>;
  if (v.bastion === 'listening') return Array.isArray(v.lines) && v.lines.every((l) => typeof l === 'string');
  return v.bastion === 'failed' && typeof v.message === 'string';
}

/** True in a process the primary forked (node:cluster worker with a worker number). */
export function isWorkerProcess(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined;
}

/** `<nodeId>-w<i>`: the node id of worker i, from the configured one or the primary's default. */
function workerNodeId(base: string, index: number): string {
  return `${base}-w${index}`;
}

/** `<dataDir>/workers/w<i>`: worker i's own lock, session store and audit chain. */
function workerDataDir(dataDir: string, index: number): string {
  return join(dataDir, 'workers', `w${index}`);
}

/**
 * What the workers share from the main data directory, linked into each worker's own one:
 * users (`bastion user`), run-time ACL rules (`bastion acl`), admin tokens and bans, the
 * provisioning records (claims, one-time tokens, devices, renewals: a token is spent once
 * whichever worker a device reaches) and the built-in PKI (listener CRLs, the audit signer's issuer). The CLI writes these in
 * `<dataDir>` while the broker runs; SQLite follows the link (its -wal and -shm files stay
 * beside the target) and every store here is opened for use by several processes.
 * SECURITY: without the links a worker would not see a deny rule, a removed user or a ban
 * an operator set in the data directory. The CLI's pending changes go to worker 1 only:
 * one audit chain records each change, once.
 */
function sharedEntries(index: number): string[] {
  return [USERS_DB_FILE, ACL_STORE_FILE, ADMIN_DB_FILE, PROVISIONING_DB_FILE, 'pki', ...(index === 1 ? [PENDING_CHANGES_DB_FILE] : [])];
}

/** Makes worker i's data directory and its links into the shared one (idempotent). */
function prepareWorkerDir(dataDir: string, index: number): void {
  const dir = workerDataDir(dataDir, index);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const name of sharedEntries(index)) {
    const path = join(dir, name);
    const target = join('..', '..', name);
    let existing: string | null = null;
    try {
      const st = lstatSync(path);
      if (!st.isSymbolicLink()) throw new BastionError('ERR_WORKER_DIR', `${path} is a file of its own, but the workers share ${join(dataDir, name)}: move it away (or merge it into the shared one)`);
      existing = readlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (existing === target) continue;
    if (existing !== null) unlinkSync(path);
    symlinkSync(target, path);
  }
}

/** `logs/audit.jsonl` → `logs/audit-w2.jsonl`: one export file per audit chain. */
function workerJsonlPath(path: string, index: number): string {
  const ext = extname(path);
  return join(dirname(path), `${basename(path, ext)}-w${index}${ext}`);
}

/** A worker's place in the set, as this process sees it. */
export interface WorkerRole {
  readonly index: number;
  readonly nodeId: string;
  /** `base` with this worker's number on every record. */
  logger(base: Logger): Logger;
  /** Tells the primary the listeners are up, with the banner lines it prints once for all workers. */
  listening(lines: string[]): void;
  /** Tells the primary why the start failed, then exits 1 (the primary says it, once for all workers). */
  failed(err: unknown): Promise<never>;
}

/** Turns the config this worker loaded into its own (in place) and returns its role. */
export function workerRole(loaded: LoadedConfig): WorkerRole {
  const raw = process.env[WORKER_ENV] ?? '';
  const index = /^[1-9][0-9]{0,2}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(index)) throw new BastionError('ERR_USAGE', `${WORKER_ENV}=${raw} is not a worker number`);
  const config = loaded.config;
  const clusterConfig = config.cluster;
  if (clusterConfig === undefined) throw new BastionError('ERR_USAGE', '--workers needs a cluster section (NATS) in the config');
  // The primary's pid (our parent) makes the default id the same in every worker.
  const nodeId = workerNodeId(resolveNodeId(clusterConfig, hostname(), process.ppid), index);
  if (!NODE_ID_RE.test(nodeId)) throw new BastionError('ERR_CONFIG', `worker node id ${nodeId} is not 1 to 64 letters, digits, _ or -`);
  config.cluster = { ...clusterConfig, nodeId };
  config.dataDir = workerDataDir(config.dataDir, index);
  if (index !== 1) {
    // The admin API (and with it /metrics) runs in worker 1 only: on a shared port each
    // request would be answered by whichever worker the primary handed it to, so a client
    // list, a ban or a scrape would describe a random worker. Worker 1's /metrics covers
    // worker 1; the other workers still enforce bans from the shared admin database.
    delete config.admin;
    // One worker re-signs the shared CRLs and answers OCSP: N writers would race on crl.pem.
    const { ocsp: _ocsp, ...pki } = config.pki;
    config.pki = { ...pki, manageCrl: false };
  }
  if (config.audit.jsonl !== undefined) config.audit.jsonl = { ...config.audit.jsonl, path: workerJsonlPath(config.audit.jsonl.path, index) };
  const send = (m: WorkerMessage, then?: () => void): void => {
    if (process.send === undefined) throw new BastionError('ERR_USAGE', 'a worker needs the IPC channel of its primary');
    process.send(m, undefined, {}, () => then?.());
  };
  return {
    index,
    nodeId,
    logger(base) {
      return {
        debug: (obj, msg) => base.debug({ worker: index, ...obj }, msg),
        info: (obj, msg) => base.info({ worker: index, ...obj }, msg),
        warn: (obj, msg) => base.warn({ worker: index, ...obj }, msg),
        error: (obj, msg) => base.error({ worker: index, ...obj }, msg),
      };
    },
    listening(lines) {
      send({ bastion: 'listening', lines });
    },
    failed(err) {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      const message = err instanceof Error ? err.message : String(err);
      return new Promise<never>(() => send({ bastion: 'failed', message, code: typeof code === 'string' ? code : null }, () => process.exit(1)));
    },
  };
}

export interface PrimaryOptions {
  loaded: LoadedConfig;
  workers: number | 'auto';
  out: LogOutput;
}

interface Slot {
  readonly index: number;
  readonly nodeId: string;
  worker: Worker | null;
  pid: number | undefined;
  /** When it was restarted within the last minute. */
  restarts: number[];
  timer: NodeJS.Timeout | null;
  /** It reported its listeners up (since its last fork). */
  ready: boolean;
  /** What it said when its start failed last. */
  lastError: { message: string; code: string | null } | null;
}

function exitText(code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
}

/**
 * The primary: forks the workers and stays until they are all gone. Resolves after a
 * SIGTERM/SIGINT once every worker stopped gracefully; rejects (one line) when the first
 * start of a worker fails, when every worker is dead for good, or when one did not stop
 * gracefully.
 */
export async function runPrimary(opts: PrimaryOptions): Promise<void> {
  const { config } = opts.loaded;
  const { logger } = opts.out;
  const count = opts.workers === 'auto' ? availableParallelism() : opts.workers;
  const base = resolveNodeId(config.cluster!, hostname(), process.pid);
  const longest = workerNodeId(base, count);
  if (!NODE_ID_RE.test(longest)) {
    throw new BastionError('ERR_CONFIG', `config error at cluster.nodeId: with --workers ${count} the workers are ${workerNodeId(base, 1)} to ${longest}, longer than 64 characters: shorten cluster.nodeId to ${64 - (longest.length - base.length)} or fewer`);
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // SECURITY: the set owns the whole data directory: a single `bastion serve` on it (or a
  // second set) is refused, as one broker per data directory is (data-dir-lock.ts).
  const lock = acquireDataDirLock(config.dataDir, logger);
  const slots: Slot[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      prepareWorkerDir(config.dataDir, i);
      slots.push({ index: i, nodeId: workerNodeId(base, i), worker: null, pid: undefined, restarts: [], timer: null, ready: false, lastError: null });
    }
  } catch (err) {
    lock.release();
    throw err;
  }
  cluster.schedulingPolicy = cluster.SCHED_RR;
  // The workers run this same command line; the worker number tells them apart.
  cluster.setupPrimary({ exec: process.argv[1]!, args: process.argv.slice(2) });

  return new Promise<void>((resolvePromise, reject) => {
    let bannerShown = false;
    let allShown = false;
    let stopping: NodeJS.Signals | null = null;
    let failure: Error | null = null;
    const unclean: string[] = [];

    const finishIfDone = (): void => {
      if (stopping === null || slots.some((s) => s.worker !== null)) return;
      lock.release();
      if (failure !== null) reject(failure);
      else if (unclean.length > 0) reject(new BastionError('ERR_WORKER_EXIT', `not every worker stopped gracefully: ${unclean.join('; ')}`));
      else resolvePromise();
    };

    const stopAll = (signal: NodeJS.Signals): void => {
      if (stopping !== null) return;
      stopping = signal;
      for (const s of slots) {
        if (s.timer !== null) clearTimeout(s.timer);
        s.timer = null;
        s.worker?.process.kill(signal);
      }
      finishIfDone();
    };

    const fail = (err: Error): void => {
      if (stopping !== null) return;
      failure = err;
      stopAll('SIGTERM');
    };

    const onMessage = (slot: Slot, m: unknown): void => {
      if (!isWorkerMessage(m)) return;
      if (m.bastion === 'failed') {
        slot.lastError = { message: m.message, code: m.code };
        return;
      }
      slot.lastError = null;
      logger.info({ worker: slot.index, workerPid: slot.pid, nodeId: slot.nodeId }, 'worker listening');
      if (!bannerShown) {
        bannerShown = true;
        opts.out.text(m.lines.join(''));
      }
      slot.ready = true;
      if (!allShown && slots.every((s) => s.ready)) {
        allShown = true;
        const admin = config.admin !== undefined ? '; the admin API and /metrics are served by worker 1' : '';
        opts.out.text(`Bastion running ${count} worker${count === 1 ? '' : 's'} (cluster node ids ${workerNodeId(base, 1)}${count > 1 ? ` to ${longest}` : ''}; primary pid ${process.pid}${admin})\n`);
      }
    };

    const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
      if (slot.worker !== worker) return;
      slot.worker = null;
      if (stopping !== null) {
        // A worker still starting when the signal came dies of it: it had nothing to drain.
        if (code !== 0 && signal !== stopping) unclean.push(`worker ${slot.index} (pid ${slot.pid}) ${exitText(code, signal)}`);
        finishIfDone();
        return;
      }
      if (!bannerShown) {
        // The first start failed (config, NATS, port): restarting would fail the same way.
        const said = slot.lastError;
        const err = said !== null ? (said.code?.startsWith('ERR_') === true ? new BastionError(said.code, said.message) : Object.assign(new Error(said.message), { code: said.code ?? undefined })) : new BastionError('ERR_WORKER_EXIT', `worker ${slot.index} (pid ${slot.pid}) ${exitText(code, signal)} before listening`);
        fail(err);
        return;
      }
      const now = Date.now();
      slot.restarts = slot.restarts.filter((t) => now - t < MINUTE_MS);
      const why = slot.lastError?.message;
      if (slot.restarts.length >= MAX_RESTARTS_PER_MINUTE) {
        logger.error({ worker: slot.index, workerPid: slot.pid, code, signal, restartsLastMinute: slot.restarts.length, ...(why !== undefined ? { err: why } : {}) }, 'worker keeps dying: not restarted again');
        if (slots.every((s) => s.worker === null && s.timer === null)) fail(new BastionError('ERR_WORKER_EXIT', `every worker died ${MAX_RESTARTS_PER_MINUTE} times within a minute (worker ${slot.index} last ${exitText(code, signal)}${why !== undefined ? `: ${why}` : ''})`));
        return;
      }
      const delay = Math.min(RESTART_BACKOFF_MS * 2 ** slot.restarts.length, RESTART_BACKOFF_MAX_MS);
      slot.restarts.push(now);
      logger.warn({ worker: slot.index, workerPid: slot.pid, code, signal, restartInMs: delay, restartsLastMinute: slot.restarts.length, ...(why !== undefined ? { err: why } : {}) }, 'worker died unexpectedly; restarting it');
      slot.timer = setTimeout(() => {
        slot.timer = null;
        if (stopping === null) fork(slot);
      }, delay);
    };

    const fork = (slot: Slot): void => {
      const worker = cluster.fork({ [WORKER_ENV]: String(slot.index) });
      slot.worker = worker;
      slot.pid = worker.process.pid;
      slot.ready = false;
      logger.info({ worker: slot.index, workerPid: slot.pid, nodeId: slot.nodeId }, 'worker started');
      worker.on('message', (m: unknown) => onMessage(slot, m));
      worker.on('exit', (code: number | null, signal: string | null) => {
        // What it said before dying may still be in the IPC channel: judge after it closed.
        if (worker.isConnected()) worker.once('disconnect', () => onExit(slot, worker, code, signal));
        else onExit(slot, worker, code, signal);
      });
      worker.on('error', (err: Error) => logger.warn({ worker: slot.index, workerPid: slot.pid, err: err.message }, 'worker IPC error'));
    };

    // Before the first fork: a signal at any moment from here on stops the workers gracefully.
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping !== null) return;
      logger.info({ signal, workers: slots.filter((s) => s.worker !== null).length }, 'shutting down');
      stopAll(signal);
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    for (const slot of slots) fork(slot);
  });
}
