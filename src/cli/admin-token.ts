/**
 * `bastion admin token create|list|revoke`: admin API bearer tokens, kept as SHA-256
 * hashes in `<dataDir>/admin.db`. Works on the data directory directly (a running broker
 * shares the file and sees a change on its next request). Owns: the commands and their
 * output. Must not: store a token in the clear (it is printed once, on stdout).
 */
import type { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import { recordAdminChange, type Actor } from '../admin/api/admin-change.js';
import { auditedChange, localUserName } from './cli-change.js';
import { generateAdminToken, hashAdminToken, isValidTokenName, TOKEN_NAME_RULE } from '../admin/api/tokens.js';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { SqliteAdminStore } from '../store/sqlite/admin-store.js';

interface DataDirOptions {
  dataDir?: string;
}

/**
 * The change record goes to stderr as one line a person reads (a CLI prints lines, not
 * log records), so stdout holds only the token: `bastion: admin change token.create of NAME by local:USER`.
 */
function stderrLine(obj: object, msg?: string): void {
  const c = obj as { action?: string; target?: string; actor?: string; outcome?: string };
  process.stderr.write(`bastion: ${msg ?? ''} ${c.action ?? ''} of ${c.target ?? ''} by ${c.actor ?? ''}${c.outcome !== undefined && c.outcome !== 'ok' ? ` (${c.outcome})` : ''}\n`);
}
const stderrLogger: Logger = { debug() {}, info: stderrLine, warn: stderrLine, error: stderrLine };

function localActor(): Actor {
  return { kind: 'local', name: localUserName(), remoteAddress: 'local' };
}

function dataDirOf(opts: DataDirOptions): string {
  return resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR);
}

/** Opens `<dataDir>/admin.db` (SQLite is loaded only when a token command runs: other commands stay light). */
async function withStore<T>(opts: DataDirOptions, fn: (store: SqliteAdminStore) => T): Promise<T> {
  const dataDir = dataDirOf(opts);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { SqliteAdminStore, ADMIN_DB_FILE } = await import('../store/sqlite/admin-store.js');
  const store = SqliteAdminStore.open(join(dataDir, ADMIN_DB_FILE));
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

function checkName(name: string): void {
  if (!isValidTokenName(name)) throw new BastionError('ERR_USAGE', `token name "${name}" is not valid: ${TOKEN_NAME_RULE}`);
}

export function registerAdminCommand(program: Command): void {
  const admin = program.command('admin').description('the admin API: bearer tokens');
  const token = admin.command('token').description('admin API bearer tokens (stored hashed in <data-dir>/admin.db)');
  const dataDirOption = (cmd: Command): Command => cmd.option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR})`);

  dataDirOption(
    token
      .command('create')
      .description('create a token and print it once')
      .requiredOption('--name <name>', 'a name for the token (shown in the change log)')
      .option('--scope <scope>', 'admin (reads and changes) or viewer (reads only)', 'admin'),
  ).action(
    async (opts: DataDirOptions & { name: string; scope: string }) => {
      checkName(opts.name);
      const scope = opts.scope;
      if (scope !== 'admin' && scope !== 'viewer') throw new BastionError('ERR_USAGE', `--scope must be admin or viewer, not "${scope}"`);
      const secret = generateAdminToken();
      // Recorded for the audit log either way (the token itself never is); a refusal changes
      // nothing and is reported as the one error line.
      await auditedChange(dataDirOf(opts), 'token.create', opts.name, async () => {
        const created = await withStore(opts, (store) => store.createToken({ name: opts.name, hash: hashAdminToken(secret), createdAt: Date.now(), scope }));
        if (!created) throw new BastionError('ERR_TOKEN_EXISTS', `a token named "${opts.name}" exists; revoke it first or pick another name`);
      }, () => ({ scope }));
      recordAdminChange({ logger: stderrLogger }, { actor: localActor(), action: 'token.create', target: opts.name, outcome: 'ok', detail: { scope } });
      process.stdout.write(`${secret}\n`);
    },
  );

  dataDirOption(token.command('list').description('list token names (the tokens themselves are not stored)')).action(async (opts: DataDirOptions) => {
    const tokens = await withStore(opts, (store) => store.listTokens());
    for (const t of tokens) process.stdout.write(`${t.name}\t${t.scope}\tcreated ${new Date(t.createdAt).toISOString()}\n`);
  });

  dataDirOption(token.command('revoke').description('revoke a token by name (refused from the next request on)').argument('<name>')).action(async (name: string, opts: DataDirOptions) => {
    await auditedChange(dataDirOf(opts), 'token.revoke', name, async () => {
      const revoked = await withStore(opts, (store) => store.revokeToken(name));
      if (!revoked) throw new BastionError('ERR_TOKEN_UNKNOWN', `no token named "${name}"`);
    });
    recordAdminChange({ logger: stderrLogger }, { actor: localActor(), action: 'token.revoke', target: name, outcome: 'ok' });
    process.stdout.write(`revoked ${name}\n`);
  });
}
