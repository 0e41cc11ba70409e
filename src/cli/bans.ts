/**
 * `bastion bans list|add|remove`: the ban list (deny entries) and allow list of a running
 * broker, through its admin API (a new entry disconnects the live clients it refuses at
 * once). Owns: the commands' arguments and output. Must not: open the admin database
 * directly (the broker keeps the list in memory).
 */
import type { Command } from 'commander';
import { BastionError } from '../core/errors.js';
import { BAN_KINDS, canonicalBanValue, type BanKind } from '../security/limits/ban-values.js';
import { addAdminClientOptions, adminClientFrom, type AdminClientOptions } from './admin-client.js';

interface BanView {
  id: number;
  kind: string;
  value: string;
  list: string;
  reason: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
}

const VALUE_HELP = 'client id, user name, certificate serial (hex), SHA-256 certificate fingerprint (hex, colons optional), IP address, or CIDR range (a.b.c.d/n, x::y/n)';

/** `30m`, `12h`, `7d` or plain seconds → seconds. */
function parseDuration(raw: string): number {
  const m = /^([1-9][0-9]{0,8})([smhd]?)$/.exec(raw);
  if (m === null) throw new BastionError('ERR_USAGE', `--for ${raw}: expected a duration such as 90s, 30m, 12h or 7d`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

function checkKind(kind: string): BanKind {
  if (!(BAN_KINDS as readonly string[]).includes(kind)) throw new BastionError('ERR_USAGE', `ban kind "${kind}" is not one of ${BAN_KINDS.join(', ')}`);
  return kind as BanKind;
}

/** One tab-separated line: id, list (deny|allow), kind, value, expiry, creator, reason. */
function line(b: BanView): string {
  return `${b.id}\t${b.list}\t${b.kind}\t${b.value}\t${b.expiresAt === null ? 'permanent' : `until ${b.expiresAt}`}\tby ${b.createdBy}${b.reason !== '' ? `\t${b.reason}` : ''}`;
}

export function registerBansCommand(program: Command): void {
  const bans = program
    .command('bans')
    .description('ban (deny) or allow clients by client id, user name, certificate, IP address or CIDR range on a running broker (through its admin API)')
    .addHelpText(
      'after',
      `
Kinds: ${BAN_KINDS.join(', ')}.
A deny entry (a ban) refuses matching clients. Once a kind has an allow entry, only clients
matching an allow entry connect (ip and cidr count as one address list, certSerial and
certFingerprint as one certificate list); deny beats allow. ip and cidr entries are also
checked when a connection is accepted, before TLS.
Automatic bans (created by auto:brute-force, auto:flapping) are listed and removed like others.`,
    );

  addAdminClientOptions(
    bans
      .command('list')
      .description('list the entries in force: id, list, kind, value, expiry, creator, reason (tab-separated)')
      .option('--allow', 'only allow-list entries')
      .option('--deny', 'only deny entries (bans)')
      .option('--kind <kind>', BAN_KINDS.join('|')),
  ).action(async (opts: AdminClientOptions & { allow?: boolean; deny?: boolean; kind?: string }) => {
    if (opts.allow === true && opts.deny === true) throw new BastionError('ERR_USAGE', 'give --allow or --deny, not both');
    const query = new URLSearchParams();
    if (opts.allow === true) query.set('list', 'allow');
    if (opts.deny === true) query.set('list', 'deny');
    if (opts.kind !== undefined) query.set('kind', checkKind(opts.kind));
    const qs = query.toString();
    const r = (await adminClientFrom(opts).request('GET', `/api/v1/bans${qs === '' ? '' : `?${qs}`}`)) as { bans: BanView[] };
    for (const b of r.bans) process.stdout.write(`${line(b)}\n`);
  });

  addAdminClientOptions(
    bans
      .command('add')
      .description('add a ban (or with --allow an allow-list entry); live clients it refuses are disconnected at once')
      .argument('<kind>', BAN_KINDS.join('|'))
      .argument('<value>', VALUE_HELP)
      .option('--allow', 'add to the allow list instead of banning')
      .option('--reason <text>', 'why (shown in the list and the change log)')
      .option('--for <duration>', 'expire after 90s, 30m, 12h, 7d... (default: permanent)'),
  ).action(async (kind: string, value: string, opts: AdminClientOptions & { allow?: boolean; reason?: string; for?: string }) => {
    const checked = canonicalBanValue(checkKind(kind), value);
    if (!checked.ok) throw new BastionError('ERR_USAGE', `${kind} "${value}" ${checked.error}`);
    const body = {
      kind,
      value,
      ...(opts.allow === true ? { list: 'allow' } : {}),
      ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
      ...(opts.for !== undefined ? { ttlSeconds: parseDuration(opts.for) } : {}),
    };
    const r = (await adminClientFrom(opts).request('POST', '/api/v1/bans', body)) as { ban: BanView; disconnected: string[] };
    process.stdout.write(`${line(r.ban)}\n`);
    if (r.disconnected.length > 0) process.stdout.write(`disconnected: ${r.disconnected.join(', ')}\n`);
  });

  addAdminClientOptions(bans.command('remove').description('lift a ban or remove an allow entry, by id').argument('<id>')).action(async (id: string, opts: AdminClientOptions) => {
    const r = (await adminClientFrom(opts).request('DELETE', `/api/v1/bans/${encodeURIComponent(id)}`)) as { removed: BanView; disconnected?: string[] };
    process.stdout.write(`removed ${r.removed.list === 'allow' ? 'allow entry' : 'ban'} ${id}\n`);
    if (r.disconnected !== undefined && r.disconnected.length > 0) process.stdout.write(`disconnected: ${r.disconnected.join(', ')}\n`);
  });
}
