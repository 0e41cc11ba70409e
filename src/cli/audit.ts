/**
 * `bastion audit verify|tail|query`: reads the audit log in `<data-dir>/audit.db`
 * directly (WAL: while the broker writes it). Owns: the commands' options, output and
 * exit codes. Must not: write to the audit database, or judge records itself
 * (security/audit/verify.ts does).
 *
 * verify exits 0 when the log is intact (warnings on stderr: the unsigned tail, a
 * self-signed signer, classic-only checkpoints), 1 with one line naming the first problem
 * otherwise. A log retention pruned verifies from its signed pruning checkpoint on, and
 * the summary says which records were pruned and when. Its summary names the signature algorithms it checked: hybrid checkpoints
 * need both their ECDSA and their ML-DSA-65 signature ("ECDSA P-256 + ML-DSA-65").
 *
 * The unsigned tail (records after the last checkpoint) is a warning by default: a
 * running broker always has one, for up to `checkpointSeconds`, and a crashed one keeps
 * it until its next checkpoint. It is the one place where a key-less rewrite (or the
 * removal of the last records with their checkpoints) cannot be told from normal
 * operation, so the warning says how many records and since when, and `--strict` makes
 * it a failure for logs of a broker that stopped cleanly.
 *
 * A cluster keeps one chain per node: verify takes several `--data-dir`s (or `--nodes`, a
 * directory of node data directories) and checks each, reporting per node id
 * (audit-verify.ts). With one data directory it behaves, and prints, as it always has.
 */
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import { BastionError } from '../core/errors.js';
import type { AuditRow, SqliteAuditStore } from '../store/sqlite/audit-store.js';
import { humanLine, jsonLine, parseCount, parseEventType, parseTime } from './audit-format.js';
import { intactLine, nodeDataDirs, verifyChain, verifyNodes } from './audit-verify.js';

interface DataDirOptions {
  dataDir?: string;
}

/** How often `tail --follow` looks for new records. */
const FOLLOW_POLL_MS = 300;
const MAX_ROWS = 1_000_000;

function dataDirOf(opts: DataDirOptions): string {
  return resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR);
}

async function openStore(opts: DataDirOptions): Promise<SqliteAuditStore> {
  const { SqliteAuditStore, AUDIT_DB_FILE } = await import('../store/sqlite/audit-store.js');
  return SqliteAuditStore.open(join(dataDirOf(opts), AUDIT_DB_FILE), { create: false });
}

function print(rows: readonly AuditRow[], json: boolean): void {
  if (rows.length === 0) return;
  process.stdout.write(`${rows.map(json ? jsonLine : humanLine).join('\n')}\n`);
}

function withDataDir(cmd: Command): Command {
  return cmd.option('--data-dir <dir>', `data directory holding audit.db (default ./${DEFAULT_DATA_DIR})`);
}

interface VerifyOptions {
  /** Every --data-dir given (verify takes several: one per cluster node). */
  dataDir: string[];
  nodes?: string;
  json?: boolean;
  strict?: boolean;
}

async function verify(opts: VerifyOptions): Promise<void> {
  const dirs = [...opts.dataDir.map((d) => resolve(process.cwd(), d)), ...(opts.nodes !== undefined ? nodeDataDirs(opts.nodes) : [])];
  if (dirs.length > 1 || opts.nodes !== undefined) return verifyNodes(dirs, { json: opts.json === true, strict: opts.strict === true });
  const { result, trustAnchor } = await verifyChain(dirs[0] ?? dataDirOf({}), opts.strict === true);
  if (opts.json === true) {
    process.stdout.write(`${JSON.stringify({ ...result, trustAnchor })}\n`);
    if (!result.ok) process.exitCode = 1;
    return;
  }
  if (result.problem !== null) throw new BastionError('ERR_AUDIT_TAMPERED', result.problem.message);
  for (const w of result.warnings) process.stderr.write(`bastion: warning: ${w}\n`);
  process.stdout.write(`${intactLine(result)}\n`);
}

async function tail(opts: DataDirOptions & { lines: string; follow?: boolean; json?: boolean }): Promise<void> {
  const n = parseCount('-n', opts.lines, MAX_ROWS);
  const json = opts.json === true;
  const store = await openStore(opts);
  const rows = store.tail(n);
  print(rows, json);
  if (opts.follow !== true) {
    store.close();
    return;
  }
  let after = rows[rows.length - 1]?.seq ?? store.last()?.seq ?? 0;
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const fresh = store.query({ afterSeq: after, limit: 10_000 });
      print(fresh, json);
      after = fresh[fresh.length - 1]?.seq ?? after;
    }, FOLLOW_POLL_MS);
    const stop = (): void => {
      clearInterval(timer);
      store.close();
      done();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

interface QueryOptions extends DataDirOptions {
  since?: string;
  until?: string;
  type?: string;
  client?: string;
  limit: string;
  json?: boolean;
}

async function query(opts: QueryOptions): Promise<void> {
  const now = Date.now();
  const since = opts.since !== undefined ? parseTime('--since', opts.since, now) : undefined;
  const until = opts.until !== undefined ? parseTime('--until', opts.until, now) : undefined;
  if (since !== undefined && until !== undefined && until <= since) throw new BastionError('ERR_USAGE', '--until must be later than --since');
  const type = opts.type !== undefined ? parseEventType(opts.type) : undefined;
  const limit = parseCount('--limit', opts.limit, MAX_ROWS);
  const store = await openStore(opts);
  try {
    print(store.query({ since, until, type, clientId: opts.client, limit }), opts.json === true);
  } finally {
    store.close();
  }
}

export function registerAuditCommand(program: Command): void {
  const audit = program.command('audit').description('check and read the tamper-evident audit log (<data-dir>/audit.db)');
  audit
    .command('verify')
    .description('check every record hash, link and sequence number and every signed checkpoint; exit 1 naming the first record altered, deleted or reordered')
    .option('--data-dir <dir>', `data directory holding audit.db (default ./${DEFAULT_DATA_DIR}); repeat it for the nodes of a cluster, each verified on its own`, (dir: string, dirs: string[]) => [...dirs, dir], [])
    .option('--nodes <dir>', 'verify every node data directory in <dir> (each subdirectory holding audit.db, e.g. <data-dir>/workers), reporting per node id')
    .option('--strict', 'fail on records not covered by a checkpoint (for a broker that stopped cleanly: its last act signs the last record)')
    .option('--json', 'print the full result as JSON')
    .action((opts: VerifyOptions) => verify(opts));
  withDataDir(
    audit
      .command('tail')
      .description('print the last records (one line each, or JSON lines)')
      .option('-n, --lines <n>', 'how many records', '20')
      .option('-f, --follow', 'keep printing new records until interrupted')
      .option('--json', 'one JSON object per line'),
  ).action((opts: DataDirOptions & { lines: string; follow?: boolean; json?: boolean }) => tail(opts));
  withDataDir(
    audit
      .command('query')
      .description('print the records matching all the given filters, oldest first')
      .option('--since <time>', 'from this time: ISO 8601, or a duration before now (30m, 1h, 7d)')
      .option('--until <time>', 'before this time (same forms)')
      .option('--type <type>', 'only this event type (e.g. auth.failure, connection.refused, limit.hit)')
      .option('--client <clientId>', 'only records about this client id')
      .option('--limit <n>', 'at most this many records', '1000')
      .option('--json', 'one JSON object per line'),
  ).action((opts: QueryOptions) => query(opts));
}
