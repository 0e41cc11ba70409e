/**
 * `bastion bans list|add|remove`: the ban list of a running broker, through its admin API
 * (a new ban disconnects matching live clients at once). Owns: the commands' arguments and
 * output. Must not: open the admin database directly (the broker keeps the list in memory).
 */
import type { Command } from 'commander';
import { BastionError } from '../core/errors.js';
import { addAdminClientOptions, adminClientFrom, type AdminClientOptions } from './admin-client.js';

const KINDS = ['clientId', 'username', 'certSerial', 'ip'] as const;

interface BanView {
  id: number;
  kind: string;
  value: string;
  reason: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
}

/** `30m`, `12h`, `7d` or plain seconds → seconds. */
function parseDuration(raw: string): number {
  const m = /^([1-9][0-9]{0,8})([smhd]?)$/.exec(raw);
  if (m === null) throw new BastionError('ERR_USAGE', `--for ${raw}: expected a duration such as 90s, 30m, 12h or 7d`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

function line(b: BanView): string {
  return `${b.id}\t${b.kind}\t${b.value}\t${b.expiresAt === null ? 'permanent' : `until ${b.expiresAt}`}\tby ${b.createdBy}${b.reason !== '' ? `\t${b.reason}` : ''}`;
}

export function registerBansCommand(program: Command): void {
  const bans = program.command('bans').description('ban clients, users, certificates or addresses on a running broker (through its admin API)');

  addAdminClientOptions(bans.command('list').description('list the bans in force')).action(async (opts: AdminClientOptions) => {
    const r = (await adminClientFrom(opts).request('GET', '/api/v1/bans')) as { bans: BanView[] };
    for (const b of r.bans) process.stdout.write(`${line(b)}\n`);
  });

  addAdminClientOptions(
    bans
      .command('add')
      .description('add a ban; matching live clients are disconnected at once')
      .argument('<kind>', KINDS.join('|'))
      .argument('<value>', 'the client id, user name, certificate serial (hex) or IP address')
      .option('--reason <text>', 'why (shown in the list and the change log)')
      .option('--for <duration>', 'expire after 90s, 30m, 12h, 7d... (default: permanent)'),
  ).action(async (kind: string, value: string, opts: AdminClientOptions & { reason?: string; for?: string }) => {
    if (!(KINDS as readonly string[]).includes(kind)) throw new BastionError('ERR_USAGE', `ban kind "${kind}" is not one of ${KINDS.join(', ')}`);
    const body = { kind, value, ...(opts.reason !== undefined ? { reason: opts.reason } : {}), ...(opts.for !== undefined ? { ttlSeconds: parseDuration(opts.for) } : {}) };
    const r = (await adminClientFrom(opts).request('POST', '/api/v1/bans', body)) as { ban: BanView; disconnected: string[] };
    process.stdout.write(`${line(r.ban)}\n`);
    if (r.disconnected.length > 0) process.stdout.write(`disconnected: ${r.disconnected.join(', ')}\n`);
  });

  addAdminClientOptions(bans.command('remove').description('lift a ban by id').argument('<id>')).action(async (id: string, opts: AdminClientOptions) => {
    await adminClientFrom(opts).request('DELETE', `/api/v1/bans/${encodeURIComponent(id)}`);
    process.stdout.write(`removed ban ${id}\n`);
  });
}
