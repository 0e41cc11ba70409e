/**
 * The CLI's client of the HTTPS admin API, for every command that changes a running
 * broker (`clients`, and the `--admin-url` paths of `user` and `acl`). Owns: the
 * `--admin-url/--token/--cert/--key/--cafile` options (env BASTION_ADMIN_URL,
 * BASTION_ADMIN_TOKEN), the request, and turning every failure into one readable line.
 * Must not: print or exit (commands do), or ever speak plain HTTP.
 *
 * Which target a command that can work either way (`user`, `acl explain|lint`) uses: an
 * explicit flag beats the environment. `--admin-url` → the API; `--data-dir` or `-c` →
 * the local files, even with BASTION_ADMIN_URL exported; neither → the API when
 * BASTION_ADMIN_URL is set, else the local data dir. Both flags at once are refused.
 *
 * Use from a command:
 *   addAdminClientOptions(cmd);
 *   const api = adminClientFrom(opts);         // throws a usage error when no URL is given
 *   const body = await api.request('GET', '/api/v1/clients');
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { resolve } from 'node:path';
import { BastionError } from '../core/errors.js';
import { CLIENT_TLS_GROUPS } from '../core/tls-config.js';

export const ADMIN_URL_ENV = 'BASTION_ADMIN_URL';
export const ADMIN_TOKEN_ENV = 'BASTION_ADMIN_TOKEN';
const REQUEST_TIMEOUT_MS = 15_000;

export interface AdminClientOptions {
  adminUrl?: string;
  token?: string;
  cert?: string;
  key?: string;
  /** `--admin-cert/--admin-key`, for commands whose `--cert` means something else (acl explain). */
  adminCert?: string;
  adminKey?: string;
  cafile?: string;
  /** The local target's flags, when the command also has them (an explicit one beats BASTION_ADMIN_URL). */
  dataDir?: string;
  config?: string;
  /** The operator certificate flags are --admin-cert/--admin-key (errors name those). */
  prefixed?: boolean;
}

/** The flag names a command gave its operator certificate options, for error messages. */
interface CertFlags {
  cert: string;
  key: string;
}

function certFlags(opts: AdminClientOptions): CertFlags {
  return opts.prefixed === true ? { cert: '--admin-cert', key: '--admin-key' } : { cert: '--cert', key: '--key' };
}

const TARGET_BOTH =
  'Target: the data directory on this machine (--data-dir, or the dataDir of -c CONFIG where the command has -c; default ./bastion-data), ' +
  `or the admin API of a running broker when --admin-url is given or ${ADMIN_URL_ENV} is set. ` +
  `An explicit flag beats the environment: --data-dir or -c works locally even with ${ADMIN_URL_ENV} set; --admin-url together with --data-dir or -c is refused.`;
const TARGET_API = `Target: the admin API of a running broker, named by --admin-url or ${ADMIN_URL_ENV} (the flag wins).`;

/**
 * Adds the admin API options. `prefixed: true` names the operator certificate options
 * `--admin-cert/--admin-key` (for commands that already have a `--cert`).
 */
export function addAdminClientOptions(cmd: Command, opts: { prefixed?: boolean } = {}): Command {
  const cert = opts.prefixed === true ? '--admin-cert' : '--cert';
  const key = opts.prefixed === true ? '--admin-key' : '--key';
  // Evaluated when help is shown, after the command added its own options (--data-dir).
  cmd.addHelpText('after', () => `\n${wrap(cmd.options.some((o) => o.long === '--data-dir') ? TARGET_BOTH : TARGET_API)}\n`);
  return cmd
    .option('--admin-url <url>', `admin API of the running broker, https://HOST:PORT (or set ${ADMIN_URL_ENV})`)
    .option('--token <token>', `admin bearer token (or set ${ADMIN_TOKEN_ENV}, which keeps it out of the process list)`)
    .option(`${cert} <file>`, 'operator client certificate for the admin API (PEM, OU operators)')
    .option(`${key} <file>`, `private key of ${cert}`)
    .option('--cafile <file>', 'CA certificate that signed the admin API server certificate');
}

/** Help paragraphs wrapped at 80 columns, like commander's own. */
export function wrap(text: string, width = 80): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line].join('\n');
}

/** True when the command goes through the admin API rather than the local files (see the file comment). */
export function wantsAdminApi(opts: AdminClientOptions): boolean {
  const local = opts.dataDir !== undefined ? '--data-dir' : opts.config !== undefined ? '-c/--config' : undefined;
  if (opts.adminUrl !== undefined && opts.adminUrl !== '') {
    if (local !== undefined) throw new BastionError('ERR_USAGE', `--admin-url and ${local} name two targets (a running broker's admin API, local files): give one`);
    return true;
  }
  if (local !== undefined) return false;
  return (process.env[ADMIN_URL_ENV] ?? '') !== '';
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(resolve(process.cwd(), path));
  } catch (err) {
    throw new BastionError('ERR_USAGE', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** Builds the client from the options and the environment; a usage error when something is missing. */
export function adminClientFrom(opts: AdminClientOptions): AdminClient {
  const fromFlag = opts.adminUrl !== undefined && opts.adminUrl !== '';
  const raw = fromFlag ? opts.adminUrl : process.env[ADMIN_URL_ENV];
  if (raw === undefined || raw === '') throw new BastionError('ERR_USAGE', `no admin API given: use --admin-url https://HOST:PORT or set ${ADMIN_URL_ENV}`);
  // The error names where the URL came from: the flag, or the variable the user may have forgotten.
  const source = fromFlag ? '--admin-url' : ADMIN_URL_ENV;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new BastionError('ERR_USAGE', `${source} ${raw} is not a URL (expected https://HOST:PORT)`);
  }
  // SECURITY: the admin API is HTTPS only; refuse to send a token in the clear.
  if (url.protocol !== 'https:') throw new BastionError('ERR_USAGE', `${source} must be https:// (the admin API speaks only HTTPS), not ${url.protocol}//`);
  const flags = certFlags(opts);
  const certFile = opts.prefixed === true ? opts.adminCert : opts.cert;
  const keyFile = opts.prefixed === true ? opts.adminKey : opts.key;
  if ((certFile === undefined) !== (keyFile === undefined)) throw new BastionError('ERR_USAGE', `${flags.cert} and ${flags.key} go together: give the operator certificate and its key`);
  const token = opts.token ?? process.env[ADMIN_TOKEN_ENV];
  return new AdminClient(url, {
    ...(token !== undefined && token !== '' ? { token } : {}),
    ...(certFile !== undefined && keyFile !== undefined ? { cert: readFile(certFile, 'certificate'), key: readFile(keyFile, 'key') } : {}),
    ...(opts.cafile !== undefined ? { ca: readFile(opts.cafile, 'CA file') } : {}),
  }, flags);
}

export interface AdminCredentials {
  token?: string;
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/** An admin API failure the CLI prints as is: one line. */
export class AdminApiError extends BastionError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('ERR_ADMIN_API', message);
  }
}

export class AdminClient {
  constructor(
    readonly url: URL,
    private readonly creds: AdminCredentials,
    private readonly flags: CertFlags = { cert: '--cert', key: '--key' },
  ) {}

  /** Sends one request and returns the parsed JSON answer; any failure is a BastionError with one line. */
  request(method: string, path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const base = this.url.origin;
    return new Promise((resolvePromise, reject) => {
      const req = https.request(
        new URL(path, this.url),
        {
          method,
          headers: {
            accept: 'application/json',
            ...(this.creds.token !== undefined ? { authorization: `Bearer ${this.creds.token}` } : {}),
            ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
          ...(this.creds.ca !== undefined ? { ca: this.creds.ca } : {}),
          ...(this.creds.cert !== undefined ? { cert: this.creds.cert, key: this.creds.key } : {}),
          timeout: REQUEST_TIMEOUT_MS,
          agent: false,
          ecdhCurve: CLIENT_TLS_GROUPS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(new BastionError('ERR_ADMIN_API', `admin API at ${base}: ${err.message}`)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text.length > 0 ? JSON.parse(text) : undefined;
            } catch {
              reject(new AdminApiError(res.statusCode ?? 0, `admin API at ${base} answered ${res.statusCode ?? '?'} with a body that is not JSON`));
              return;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolvePromise(parsed);
            else reject(new AdminApiError(status, describeFailure(status, parsed, this.flags)));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
      req.on('error', (err: NodeJS.ErrnoException) => reject(describeConnectError(base, err)));
      req.end(payload);
    });
  }
}

function serverMessage(body: unknown): string {
  if (typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string') return (body as { error: string }).error;
  return 'no reason given';
}

function describeFailure(status: number, body: unknown, flags: CertFlags): string {
  const msg = serverMessage(body);
  switch (status) {
    case 401:
      return `not authenticated: ${msg} (give --token, ${ADMIN_TOKEN_ENV}, or ${flags.cert}/${flags.key} of an operator)`;
    case 403:
      return `forbidden: ${msg}`;
    case 404:
      return `not found: ${msg}`;
    case 429:
      return `refused: ${msg}`;
    default:
      return `admin API error ${status}: ${msg}`;
  }
}

function describeConnectError(base: string, err: NodeJS.ErrnoException): BastionError {
  const code = err.code ?? '';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
    return new BastionError('ERR_ADMIN_UNREACHABLE', `admin API not reachable at ${base} (${code})`);
  }
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || code.startsWith('ERR_SSL') || /certificate|handshake|alert/i.test(err.message)) {
    return new BastionError('ERR_ADMIN_TLS', `TLS with the admin API at ${base} failed: ${err.message} (is --cafile the CA of its certificate?)`);
  }
  return new BastionError('ERR_ADMIN_API', `admin API at ${base}: ${err.message}`);
}
