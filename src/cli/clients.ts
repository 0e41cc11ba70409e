/**
 * `bastion clients list|show|kick`: connected clients of a running broker, through its
 * admin API. Owns: the commands' arguments and output. Must not: reach the broker any
 * other way (admin-client.ts speaks HTTPS).
 */
import type { Command } from 'commander';
import type { ClientPage, ConnectedClientDetail } from '../broker/api.js';
import { BastionError } from '../core/errors.js';
import { addAdminClientOptions, adminClientFrom, type AdminClientOptions } from './admin-client.js';

interface ListOptions extends AdminClientOptions {
  offset?: string;
  limit?: string;
  json?: boolean;
}

function count(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^[0-9]{1,9}$/.test(raw)) throw new BastionError('ERR_USAGE', `--${name} must be a whole number, not "${raw}"`);
  return Number(raw);
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function registerClientsCommand(program: Command): void {
  const clients = program.command('clients').description('connected clients of a running broker (through its admin API)');

  addAdminClientOptions(
    clients
      .command('list')
      .description('list connected clients')
      .option('--offset <n>', 'skip the first n clients (ordered by client id)')
      .option('--limit <n>', 'at most n clients (default 100, at most 1000)')
      .option('--json', 'print the JSON answer'),
  ).action(async (opts: ListOptions) => {
    const api = adminClientFrom(opts);
    const query = new URLSearchParams({ offset: String(count('offset', opts.offset, 0)), limit: String(count('limit', opts.limit, 100)) });
    const page = (await api.request('GET', `/api/v1/clients?${query.toString()}`)) as ClientPage;
    if (opts.json === true) return print(JSON.stringify(page, null, 2));
    print(`${page.total} connected${page.total > page.clients.length ? ` (showing ${page.offset + 1}-${page.offset + page.clients.length})` : ''}`);
    for (const c of page.clients) {
      print(`${c.clientId}\t${c.method}\t${c.principal ?? '-'}\t${c.remoteAddress}\t${c.listener}\tsince ${c.connectedSince}\t${c.subscriptions} subscription(s)`);
    }
  });

  addAdminClientOptions(clients.command('show').description('show one connected client').argument('<client-id>').option('--json', 'print the JSON answer')).action(
    async (clientId: string, opts: AdminClientOptions & { json?: boolean }) => {
      const api = adminClientFrom(opts);
      const c = (await api.request('GET', `/api/v1/clients/${encodeURIComponent(clientId)}`)) as ConnectedClientDetail;
      if (opts.json === true) return print(JSON.stringify(c, null, 2));
      print(`client id:      ${c.clientId}`);
      print(`principal:      ${c.principal ?? '(anonymous)'} (${c.method})`);
      if (c.certificate !== null) print(`certificate:    CN=${c.certificate.commonName} serial ${c.certificate.serialNumber}${c.certificate.organizationalUnits.length > 0 ? ` OU=${c.certificate.organizationalUnits.join(',')}` : ''}`);
      print(`from:           ${c.remoteAddress} on listener ${c.listener}`);
      print(`connected since ${c.connectedSince} (MQTT ${c.protocolVersion === 5 ? '5' : '3.1.1'})`);
      print(`subscriptions:  ${c.subscriptions}${c.subscriptionFilters.map((s) => `\n  ${s.filter} (QoS ${s.qos})`).join('')}`);
      print(`inflight ${c.inflight}, queued ${c.queued}`);
    },
  );

  addAdminClientOptions(clients.command('kick').description('disconnect a client (MQTT 5: DISCONNECT 0x98 administrative action)').argument('<client-id>')).action(
    async (clientId: string, opts: AdminClientOptions) => {
      const api = adminClientFrom(opts);
      await api.request('DELETE', `/api/v1/clients/${encodeURIComponent(clientId)}`);
      print(`disconnected ${clientId}`);
    },
  );
}
