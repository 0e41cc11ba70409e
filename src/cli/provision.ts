/**
 * `bastion provision token create|list|revoke`, `provision claim list|revoke`
 * (provision-claim.ts) and `provision device list`: the records of device provisioning in
 * `<data-dir>/provisioning.db`, worked on directly (a running broker shares the file and
 * sees a change on the next request). Each change (and refusal) is recorded for the
 * broker's audit log (cli-change.ts). Owns: the commands and their output.
 *
 * SECURITY: a one-time token is printed once, on stdout, and stored only as the SHA-256
 * of its secret; lists show ids, never secrets; the audit record holds no secret either.
 */
import type { Command } from 'commander';
import { BastionError } from '../core/errors.js';
import { deviceJson, tokenJson, tokenStatus } from '../provisioning/provisioning-views.js';
import type { StoredTokenRecord } from '../provisioning/sqlite-provisioning-store.js';
import { auditedChange } from './cli-change.js';
import { registerClaimCommands } from './provision-claim.js';
import {
  addProvisionSourceOptions,
  iso,
  parseCount,
  parseTtl,
  printTable,
  provisionSource,
  requireTemplate,
  usage,
  withProvisioningStore,
  type ProvisionSourceOptions,
} from './provision-context.js';

/** A token's lifetime unless --ttl says otherwise. */
const DEFAULT_TTL = '24h';
/** Up to this many token ids go into the audit record (the count always does). */
const AUDITED_IDS = 100;




/** A token id, or a whole `bpt_…` token (its id is used). */
async function tokenIdOf(text: string): Promise<string> {
  const { isTokenId, parseToken } = await import('../provisioning/secrets.js');
  const parsed = parseToken(text);
  if (parsed !== null) return parsed.id;
  if (!isTokenId(text)) throw usage(`a token id is 12 hex characters (as \`bastion provision token list\` shows), got "${text}"`);
  return text;
}

function registerTokenCommands(provision: Command): void {
  const token = provision.command('token').description('one-time provisioning tokens (stored hashed in <data-dir>/provisioning.db)');

  addProvisionSourceOptions(
    token
      .command('create')
      .description('create one-time tokens for a template and print them once (one per line on stdout)')
      .requiredOption('--template <name>', 'the template the devices register against (from the config)')
      .option('--count <n>', 'how many tokens, 1 to 10000', '1')
      .option('--ttl <duration>', 'how long each token is valid: 90s, 15m, 1h, 7d (at most 30d)', DEFAULT_TTL)
      .option('--json', 'print {template, expiresAt, tokens: [{id, token}]}'),
  ).action(async (opts: ProvisionSourceOptions & { template: string; count: string; ttl: string; json?: boolean }) => {
    const count = parseCount(opts.count);
    const ttl = parseTtl(opts.ttl);
    const source = await provisionSource(opts);
    const template = requireTemplate(source, opts.template);
    const { formatToken, newSecret, newTokenId, secretHash } = await import('../provisioning/secrets.js');
    const now = Date.now();
    const expiresAt = now + ttl;
    const made = Array.from({ length: count }, () => ({ id: newTokenId(), secret: newSecret() }));
    await auditedChange(
      source.dataDir,
      'provision.token.create',
      template,
      () =>
        withProvisioningStore(source.dataDir, true, (store) => {
          store!.addTokens(made.map((t) => ({ token: { id: t.id, template, expiresAt, createdAt: now }, secretHash: secretHash(t.secret) })));
        }),
      () => ({ count, expiresAt: iso(expiresAt), ...(count <= AUDITED_IDS ? { ids: made.map((t) => t.id) } : {}) }),
    );
    const tokens = made.map((t) => ({ id: t.id, token: formatToken(t.id, t.secret) }));
    if (opts.json === true) process.stdout.write(`${JSON.stringify({ template, expiresAt: iso(expiresAt), tokens }, null, 2)}\n`);
    else process.stdout.write(tokens.map((t) => `${t.token}\n`).join(''));
    process.stderr.write(`bastion: created ${count} one-time token(s) for template ${template}, valid until ${iso(expiresAt)}; they are shown only now\n`);
  });

  addProvisionSourceOptions(token.command('list').description('list tokens: id, template, created, expires, used by (never the secrets)').option('--json', 'JSON array')).action(
    async (opts: ProvisionSourceOptions & { json?: boolean }) => {
      const source = await provisionSource(opts);
      const tokens = await withProvisioningStore(source.dataDir, false, (store) => store?.listTokens() ?? []);
      const now = Date.now();
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(tokens.map((t) => tokenJson(t, now)), null, 2)}\n`);
        return;
      }
      printTable(
        ['ID', 'TEMPLATE', 'STATUS', 'CREATED', 'EXPIRES', 'USED BY'],
        tokens.map((t) => [t.id, t.template, tokenStatus(t, now), iso(t.createdAt), iso(t.expiresAt), t.usedBy === null ? '-' : `${t.usedBy} at ${iso(t.usedAt)}`]),
      );
    },
  );

  addProvisionSourceOptions(token.command('revoke').description('revoke an unused token (refused from the next request on)').argument('<id>', 'token id (or the whole bpt_… token)')).action(
    async (text: string, opts: ProvisionSourceOptions) => {
      const id = await tokenIdOf(text);
      const source = await provisionSource(opts);
      const out = await auditedChange(
        source.dataDir,
        'provision.token.revoke',
        id,
        () =>
          withProvisioningStore(source.dataDir, false, (store): { result: 'revoked' | 'already-revoked'; token: StoredTokenRecord } => {
            const before = store?.token(id) ?? null;
            if (store === null || before === null) throw new BastionError('ERR_NOT_FOUND', `no token ${id} (see \`bastion provision token list\`)`);
            if (before.usedAt !== null) throw new BastionError('ERR_CONFLICT', `token ${id} was used by ${before.usedBy ?? '?'} at ${iso(before.usedAt)}; nothing to revoke (revoke that device's certificate instead)`);
            if (before.revokedAt !== null) return { result: 'already-revoked', token: before };
            // Used between the read and here: the UPDATE is the one that decides.
            if (!store.revokeToken(id, Date.now())) throw new BastionError('ERR_CONFLICT', `token ${id} was used just now; nothing to revoke`);
            return { result: 'revoked', token: store.token(id) ?? before };
          }),
        (o) => ({ result: o.result, template: o.token.template }),
      );
      if (out.result === 'already-revoked') process.stdout.write(`token ${id} was already revoked at ${iso(out.token.revokedAt)}; nothing changed\n`);
      else process.stdout.write(`revoked token ${id} (template ${out.token.template})\n`);
    },
  );
}

function registerDeviceCommands(provision: Command): void {
  const device = provision.command('device').description('provisioned devices');
  addProvisionSourceOptions(device.command('list').description('list provisioned devices: identity, template, certificate, how they were provisioned').option('--json', 'JSON array')).action(
    async (opts: ProvisionSourceOptions & { json?: boolean }) => {
      const source = await provisionSource(opts);
      const devices = await withProvisioningStore(source.dataDir, false, (store) => store?.listDevices() ?? []);
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(devices.map(deviceJson), null, 2)}\n`);
        return;
      }
      printTable(
        ['IDENTITY', 'TEMPLATE', 'SERIAL', 'NOT AFTER', 'VIA'],
        devices.map((d) => [d.identity, d.template, d.certSerial, iso(d.notAfter), d.claim.kind === 'claim' ? `claim ${d.claim.serialNumber}` : `token ${d.claim.id}`]),
      );
    },
  );
}

export function registerProvisionCommand(program: Command): void {
  const provision = program.command('provision').description('device provisioning: one-time tokens, claim certificates, provisioned devices');
  registerTokenCommands(provision);
  registerClaimCommands(provision);
  registerDeviceCommands(provision);
}
