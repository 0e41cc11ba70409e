/**
 * `bastion user add|del|list`: the password users in `<data-dir>/users.db`. Works on the
 * data directory directly; a running broker reads the store on every login, so changes
 * apply to the next CONNECT without a restart. Each change (and refusal) made here is recorded
 * for the broker's audit log (cli-change.ts); through --admin-url the admin API records it.
 * Must not: print or log a password, or take one from argv (it would be in `ps` and shell history).
 */
import type { Command } from 'commander';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import { BastionError } from '../core/errors.js';
import { addAdminClientOptions, adminClientFrom, wantsAdminApi, type AdminClientOptions } from './admin-client.js';
import { apiUserDelete, apiUserList, apiUserPut } from './admin-calls.js';
import { auditedChange } from './cli-change.js';
import { makeUserRecord, passwordProblem, PasswordHasher } from '../security/authn/password-hash.js';
import { setUser, userNameProblem } from '../security/authn/user-store.js';
import type { SqliteUserStore } from '../store/sqlite/user-store.js';

/** Where users live under the data dir (the SQLite module loads only when a user command runs). */
const USERS_DB_FILE = 'users.db';

interface UserOptions {
  dataDir?: string;
}

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

function dataDir(opts: UserOptions): string {
  return resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR);
}

function storePath(opts: UserOptions): string {
  return join(dataDir(opts), USERS_DB_FILE);
}

async function openStore(opts: UserOptions): Promise<SqliteUserStore> {
  mkdirSync(dataDir(opts), { recursive: true, mode: 0o700 });
  const { SqliteUserStore } = await import('../store/sqlite/user-store.js');
  return new SqliteUserStore(storePath(opts));
}

function checkName(name: string): void {
  const problem = userNameProblem(name);
  if (problem !== null) throw usage(problem);
}

/** All of stdin, first line only (a trailing newline is not part of the password). */
function readStdinLine(): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => (data += chunk));
    process.stdin.on('end', () => resolvePromise(data.split(/\r?\n/)[0] ?? ''));
    process.stdin.on('error', reject);
  });
}

/** Reads one line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const stdin = process.stdin;
    // Raw mode (no echo) before the prompt shows, so nothing typed after it is echoed.
    stdin.setRawMode(true);
    process.stderr.write(question);
    stdin.resume();
    stdin.setEncoding('utf8');
    let value = '';
    const done = (err: Error | null): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
      if (err !== null) reject(err);
      else resolvePromise(value);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done(null);
        if (ch === '\u0003' || ch === '\u0004') return done(usage('cancelled'));
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function readNewPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) return readStdinLine();
  if (process.stdin.isTTY !== true) throw usage('no password: use --password-stdin (stdin is not a terminal)');
  const first = await promptHidden('Password: ');
  const problem = passwordProblem(first);
  if (problem !== null) throw usage(problem);
  const again = await promptHidden('Password (again): ');
  if (again !== first) throw usage('the passwords do not match');
  return first;
}

/** `user list` output, from the store or the admin API: JSON, or one `name<TAB>created` line each. */
function printUsers(users: Array<{ name: string; createdAt: string }>, json: boolean): void {
  if (json) process.stdout.write(`${JSON.stringify(users)}\n`);
  else for (const u of users) process.stdout.write(`${u.name}\t${u.createdAt}\n`);
}

export function registerUserCommand(program: Command): void {
  const user = program.command('user').description('manage password users (for the password and SCRAM-SHA-256 providers)');
  // With --admin-url (or BASTION_ADMIN_URL) each command goes through a running broker's admin API.
  addAdminClientOptions(user
    .command('add'))
    .argument('<name>', 'user name')
    .description('add a user, or set a new password for an existing one')
    .option('--password-stdin', 'read the password from the first line of stdin (else prompt when stdin is a terminal)')
    .option('--scram-iterations <n>', 'PBKDF2 iterations of the SCRAM keys (at least 4096)', '4096')
    .option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR}); users live in <dir>/users.db`)
    .action(async (name: string, opts: UserOptions & AdminClientOptions & { passwordStdin?: boolean; scramIterations: string }) => {
      checkName(name);
      const iterations = Number(opts.scramIterations);
      if (!Number.isInteger(iterations) || iterations < 4096 || iterations > 1_000_000) throw usage('--scram-iterations must be an integer from 4096 to 1000000');
      const password = await readNewPassword(opts.passwordStdin === true);
      const problem = passwordProblem(password);
      if (problem !== null) throw usage(problem);
      if (wantsAdminApi(opts)) {
        const outcome = await apiUserPut(adminClientFrom(opts), name, password);
        process.stdout.write(`${outcome === 'changed' ? 'password changed for' : 'added'} user ${name}\n`);
        return;
      }
      const record = await makeUserRecord(name, password, new PasswordHasher(), iterations);
      const outcome = await auditedChange(
        dataDir(opts),
        'user.put',
        name,
        async () => {
          const store = await openStore(opts);
          try {
            return await setUser(store, record);
          } finally {
            store.close();
          }
        },
        (result) => ({ result }),
      );
      process.stdout.write(`${outcome === 'changed' ? 'password changed for' : 'added'} user ${name}\n`);
    });
  addAdminClientOptions(user
    .command('del'))
    .argument('<name>', 'user name')
    .description('delete a user (their next login is refused; live sessions stay until they end)')
    .option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR})`)
    .action(async (name: string, opts: UserOptions & AdminClientOptions) => {
      checkName(name);
      if (wantsAdminApi(opts)) {
        await apiUserDelete(adminClientFrom(opts), name);
        process.stdout.write(`deleted user ${name}\n`);
        return;
      }
      await auditedChange(dataDir(opts), 'user.del', name, async () => {
        if (!existsSync(storePath(opts))) throw new BastionError('ERR_NOT_FOUND', `no user ${name}`);
        const store = await openStore(opts);
        try {
          if (!store.delete(name)) throw new BastionError('ERR_NOT_FOUND', `no user ${name}`);
        } finally {
          store.close();
        }
      });
      process.stdout.write(`deleted user ${name}\n`);
    });
  addAdminClientOptions(user
    .command('list'))
    .description('list users (names and creation times; never hashes)')
    .option('--json', 'print JSON')
    .option('--data-dir <dir>', `data directory (default ./${DEFAULT_DATA_DIR})`)
    .action(async (opts: UserOptions & AdminClientOptions & { json?: boolean }) => {
      if (wantsAdminApi(opts)) {
        printUsers((await apiUserList(adminClientFrom(opts))).map((u) => ({ name: u.username, createdAt: u.createdAt })), opts.json === true);
        return;
      }
      // No store yet means no users (and listing must not create one).
      const store = existsSync(storePath(opts)) ? await openStore(opts) : null;
      try {
        printUsers((store?.list() ?? []).map((u) => ({ name: u.name, createdAt: new Date(u.createdAt).toISOString(), scramIterations: u.scram.iterations })), opts.json === true);
      } finally {
        store?.close();
      }
    });
}
