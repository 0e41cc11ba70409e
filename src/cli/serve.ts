/**
 * `bastion serve`: start the broker from a config file, or with no config a secure
 * zero-config broker (mutual TLS on 127.0.0.1:8883, development PKI in the data dir);
 * with `--workers` (and a cluster section) N such brokers in one set (serve-workers.ts).
 */
import type { Command } from 'commander';
import { relative, resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import { DEFAULT_WS_PATH } from '../core/config.js';
import { BastionError } from '../core/errors.js';
import { loadConfigFile } from '../server/load-config.js';
import { startServer, type BastionServer } from '../server/server.js';
import { connectHints, zeroConfig } from '../server/zero-config.js';
import { cliName } from './cli-name.js';
import { createLogOutput, LOG_FORMATS, type LogFormat } from './log-output.js';
import type { WorkerRole } from './serve-workers.js';

interface ServeOptions {
  config?: string;
  dataDir?: string;
  port?: string;
  logLevel?: string;
  logFormat?: string;
  workers?: string;
  consolePort?: string;
  /** False with --no-console. */
  console?: boolean;
}

/** Most broker processes `--workers` may ask for on one machine. */
const MAX_WORKERS = 256;

/** `--workers N|auto`: a whole number from 1 to MAX_WORKERS, or `auto` (one per core). */
export function parseWorkers(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) throw new BastionError('ERR_USAGE', `invalid --workers ${value} (a whole number from 1 to ${MAX_WORKERS}, or auto)`);
  return n;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('start the broker (with no config: mutual TLS on 127.0.0.1:8883 and a development PKI)')
    .option('-c, --config <file>', 'YAML config file')
    .option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR})`)
    .option('--port <port>', 'port of the zero-config TLS listener (default 8883)')
    .option('--console-port <port>', 'port of the zero-config web console and admin API on 127.0.0.1 (default 9443; 0 with --port 0)')
    .option('--no-console', 'zero-config: no web console or admin API')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .option('--workers <n>', 'N|auto: broker processes sharing the listeners, joined through NATS (needs a cluster section in the config)')
    .option('--log-format <format>', `${LOG_FORMATS.join('|')}: JSON lines, or human lines with local times (auto: human when stderr is a terminal; default: log.format of the config, else auto)`)
    .action(async (opts: ServeOptions) => {
      await serve(opts);
    });
}

/** `--workers` joins its processes through NATS: it needs the config's cluster section. */
function refuseWorkersWithoutCluster(workers: number | 'auto' | undefined, hasCluster: boolean, configPath: string | undefined): void {
  if (workers !== undefined && !hasCluster) {
    const where = configPath === undefined ? 'no config was given (-c)' : `${configPath} has none`;
    throw new BastionError('ERR_USAGE', `--workers needs a cluster section (NATS) in the config: cluster.nats.servers, plus credentials and TLS for a NATS server off this machine; ${where}`);
  }
}

/** One banner line per listener: what a client connects to. */
function listeningLines(listeners: BastionServer['listeners']): string[] {
  return listeners.map((l) => {
    const tls = l.config.protocol === 'mqtts' || l.config.protocol === 'wss';
    const secure = tls ? `TLS, client certificates ${l.config.tls?.clientCerts}` : 'PLAINTEXT (insecure: true)';
    // A WebSocket URL names its path, so the line is what a client connects to.
    const path = l.config.protocol === 'ws' || l.config.protocol === 'wss' ? (l.config.path ?? DEFAULT_WS_PATH) : '';
    return `Bastion listening on ${l.config.protocol}://${l.host}:${l.port}${path} (${l.config.name}; ${secure})\n`;
  });
}

async function serve(opts: ServeOptions): Promise<void> {
  const cwd = process.cwd();
  if (opts.logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(opts.logFormat)) throw new BastionError('ERR_USAGE', `invalid --log-format ${opts.logFormat} (${LOG_FORMATS.join(', ')})`);
  const workers = opts.workers !== undefined ? parseWorkers(opts.workers) : undefined;
  // Everything serve says (banner and logs) goes to stderr through one writer, in order;
  // the banner is plain text, which JSON log readers skip as they skip any non-JSON line.
  const early: string[] = [];
  let loaded;
  let hints: { connect: string[]; nextDevice: string } | undefined;
  /** Zero-config: the console's sign-in token file, when there is a console. */
  let consoleToken: { path: string; valid: boolean } | null = null;
  if (opts.config !== undefined) {
    if (opts.consolePort !== undefined || opts.console === false) throw new BastionError('ERR_USAGE', '--console-port and --no-console are for the start without a config; with -c, the admin section (admin.console) decides');
    loaded = loadConfigFile(opts.config);
    if (opts.dataDir !== undefined) loaded.config.dataDir = resolve(cwd, opts.dataDir);
    refuseWorkersWithoutCluster(workers, loaded.config.cluster !== undefined, opts.config);
  } else {
    // Zero-config has no cluster section; refused before a development PKI is made.
    refuseWorkersWithoutCluster(workers, false, undefined);
    const dataDir = resolve(cwd, opts.dataDir ?? DEFAULT_DATA_DIR);
    const port = opts.port !== undefined ? Number(opts.port) : 8883;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BastionError('ERR_USAGE', `invalid --port ${opts.port}`);
    // The PKI code (and its X.509 libraries) loads only when a development PKI is needed.
    const { ensureDevPki } = await import('../server/dev-pki.js');
    const pki = await ensureDevPki(dataDir);
    if (pki.created) early.push(`Created a PKI (root CA, intermediate CA, server and demo device certificates) in ${pki.dir}\n`);
    const consolePort = opts.console === false ? null : opts.consolePort !== undefined ? Number(opts.consolePort) : port === 0 ? 0 : 9443;
    if (consolePort !== null && (!Number.isInteger(consolePort) || consolePort < 0 || consolePort > 65535)) throw new BastionError('ERR_USAGE', `invalid --console-port ${opts.consolePort}`);
    if (consolePort !== null) {
      const { ensureConsoleToken } = await import('../server/console-token.js');
      const made = ensureConsoleToken(dataDir);
      if (made.created) early.push(`Created an admin token for the web console in ${made.path}\n`);
      consoleToken = made;
    }
    loaded = { config: zeroConfig(dataDir, pki, port, consolePort), baseDir: cwd };
    // `bastion` when installed as a package, else `node dist/…` as run (cli-name.ts).
    hints = connectHints(pki, port, cwd, opts.dataDir, cliName());
  }
  const level = opts.logLevel ?? loaded.config.log.level;
  const out = createLogOutput(level, (opts.logFormat as LogFormat | undefined) ?? loaded.config.log.format);
  let worker: WorkerRole | undefined;
  if (workers !== undefined) {
    // A cluster section is there (refused above otherwise). This process is either the
    // primary, which runs no broker but N workers, or one of them (serve-workers.ts).
    const { isWorkerProcess, runPrimary, workerRole } = await import('./serve-workers.js');
    if (!isWorkerProcess()) {
      await runPrimary({ loaded, workers, out });
      process.exit(0);
    }
    worker = workerRole(loaded);
  }
  const logger = worker?.logger(out.logger) ?? out.logger;
  for (const line of early) out.text(line);
  let server: BastionServer;
  try {
    server = await startServer({ config: loaded.config, baseDir: loaded.baseDir, logger });
  } catch (err) {
    // A worker's failure is said once, by the primary, for all of them.
    if (worker !== undefined) await worker.failed(err);
    throw err;
  }
  // Signal handlers go in before the listening line: whoever waits for that line may
  // signal at once, and a SIGTERM before process.on() would kill without a graceful stop.
  let exiting = false;
  const shutdown = (signal: string): void => {
    if (exiting) return;
    exiting = true;
    logger.info({ signal }, 'shutting down');
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`bastion: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A worker's banner is printed by the primary, once for all workers.
  if (worker !== undefined) worker.listening(listeningLines(server.listeners));
  else out.text(listeningLines(server.listeners).join(''));
  if (hints !== undefined) {
    const port = server.listeners[0]!.port;
    const fixed = hints.connect.map((h) => h.replace(/-p \d+/, `-p ${port}`));
    const admin = server.admin;
    const rel = (p: string): string => (relative(cwd, p).startsWith('..') ? p : relative(cwd, p));
    const consoleLine =
      admin === null
        ? ''
        : `Web console: https://localhost:${admin.port}/console/ (${consoleToken?.valid === true ? `sign in with the token in ${rel(consoleToken.path)}` : `the token in ${rel(consoleToken?.path ?? 'console-token')} was revoked: delete the file for a new one at the next start, or make one with \`${cliName()} admin token create --name NAME\``}; the browser must trust ${rel(loaded.config.admin!.tls.ca!)})\n`;
    out.text(
      `\nConnect with the demo device certificate:\n  ${fixed.join('\n  ')}\n` +
        `Issue the next device's certificate (revoke with \`${cliName()} cert revoke SERIAL\`):\n  ${hints.nextDevice}\n` +
        `${consoleLine}\n`,
    );
  }
}
