/**
 * `bastion cert`: issue a key pair and certificate (`issue`; `--profile claim` a device
 * provisioning claim certificate, see provision-claim.ts), sign a device's CSR
 * (`sign-csr`), revoke (`revoke`, the CRL is re-signed at once), and read the inventory
 * (`list`, `show`). Exit codes: 0 success (also for revoking an already revoked
 * certificate, which changes nothing and says so), 1 failure (a bad option value too), 2
 * a command line commander cannot parse (unknown option, missing argument). A revocation (and
 * its refusal, such as an unknown serial) is recorded for the broker's audit log.
 */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../server/pki-layout.js';
import { BastionError } from '../core/errors.js';
import { certificateView } from '../server/certificate-view.js';
import { auditedChange } from './cli-change.js';
import type { CertificateProfile } from '../pki/index.js';
import type { InventoryRecord } from '../store/sqlite/pki-inventory.js';
import type { RevokeResult } from '../server/pki-service.js';
import {
  addDataDirOption,
  addRootKeyOptions,
  collect,
  parseDays,
  parseDuration,
  parseKeyAlgorithm,
  parseSans,
  usage,
  withPki,
  type RootKeyOptions,
} from './pki-cli.js';

interface IssueCliOptions extends RootKeyOptions {
  profile: string;
  cn?: string;
  ou?: string;
  san?: string[];
  days?: string;
  key?: string;
  out?: string;
  ocspUrl?: string;
  template?: string;
  maxDevices?: string;
  config?: string;
}

function parseProfile(value: string, choices = 'server or client'): CertificateProfile {
  if (value !== 'server' && value !== 'client') throw usage(`--profile must be ${choices}, got "${value}"`);
  return value;
}

async function readInput(path: string, what: string): Promise<string> {
  try {
    return await readFile(resolve(process.cwd(), path), 'utf8');
  } catch (err) {
    throw new BastionError('ERR_USAGE', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The JSON shape of an inventory record (dates as ISO strings; PEM only when asked). */
function toJson(r: InventoryRecord, withPem: boolean): Record<string, unknown> {
  return { ...certificateView(r), ...(withPem ? { pem: r.certPem } : {}) };
}

export function registerCertCommand(program: Command): void {
  const cert = program.command('cert').description('issue, sign, revoke and list certificates');

  addRootKeyOptions(
    addDataDirOption(
      cert
        .command('issue')
        .description('issue a key pair and certificate: writes <out>/<cn>.crt (with chain) and <cn>.key')
        .requiredOption('--profile <profile>', 'server, client, or claim (a device provisioning claim certificate for --template)')
        .option('--cn <name>', 'common name (a device id for client certificates); required except for claim')
        .option('--ou <unit>', 'organizational unit')
        .option('--san <list>', 'DNS:host,IP:1.2.3.4,URI:spiffe://…,email:… (repeatable)', collect)
        .option('--days <n>', 'lifetime in days (default 365)')
        .option('--key <alg>', 'ec-p256 (default), ec-p384, rsa-2048 or rsa-3072')
        .option('--out <dir>', 'output directory (default <data-dir>/pki/issued)')
        .option('--ocsp-url <url>', 'OCSP responder URL for the certificate (default: `ca set-ocsp-url`)')
        .option('--template <name>', 'claim: the provisioning template it provisions devices for (from -c CONFIG)')
        .option('--max-devices <n>', 'claim: at most this many devices (default 0: no limit)')
        .option('-c, --config <file>', "claim: the broker's YAML config (templates, dataDir, pki.dir)"),
    ),
    false,
  ).action(async (opts: IssueCliOptions) => {
    if (opts.profile === 'claim') {
      const { issueClaimCertificate } = await import('./provision-claim.js');
      return issueClaimCertificate(opts);
    }
    const profile = parseProfile(opts.profile, 'server or client (or claim, with --template)');
    if (opts.template !== undefined || opts.maxDevices !== undefined || opts.config !== undefined) throw usage('--template, --max-devices and -c go with --profile claim');
    const cn = opts.cn;
    if (cn === undefined) throw usage('--cn is required for server and client certificates');
    const sans = parseSans(opts.san);
    const issued = await withPki(opts, (pki) =>
      pki.issue({
        profile,
        commonName: cn,
        organizationalUnit: opts.ou,
        days: parseDays(opts.days),
        keyAlgorithm: parseKeyAlgorithm(opts.key),
        outDir: opts.out !== undefined ? resolve(process.cwd(), opts.out) : undefined,
        ocspUrl: opts.ocspUrl,
        ...(sans !== undefined ? { sans } : {}),
      }),
    );
    process.stdout.write(
      `Issued ${profile} certificate for ${cn}\n` +
        `  serial:      ${issued.serialNumber}\n` +
        `  fingerprint: SHA256 ${issued.fingerprint256}\n` +
        `  expires:     ${issued.notAfter.toISOString()}\n` +
        `  certificate: ${issued.certPath}\n` +
        `  key:         ${issued.keyPath}\n`,
    );
  });

  addRootKeyOptions(
    addDataDirOption(
      cert
        .command('sign-csr')
        .description("sign a device's certificate signing request (the key never leaves the device)")
        .requiredOption('--csr <file>', 'PKCS#10 request, PEM')
        .option('--profile <profile>', 'server or client', 'client')
        .option('--days <n>', 'lifetime in days (default 365)')
        .option('--out <file>', 'write the certificate (with chain) here instead of stdout')
        .option('--ocsp-url <url>', 'OCSP responder URL for the certificate'),
    ),
    false,
  ).action(async (opts: RootKeyOptions & { csr: string; profile: string; days?: string; out?: string; ocspUrl?: string }) => {
    const profile = parseProfile(opts.profile);
    const days = parseDays(opts.days);
    const csrPem = await readInput(opts.csr, 'CSR file');
    const signed = await withPki(opts, (pki) => pki.signCsr({ csrPem, profile, days, ocspUrl: opts.ocspUrl }));
    if (opts.out !== undefined) {
      const { writeFileAtomic, CERT_MODE } = await import('../server/pki-files.js');
      await writeFileAtomic(resolve(process.cwd(), opts.out), signed.certPem, CERT_MODE);
      process.stdout.write(
        `Signed ${profile} certificate for ${signed.commonName}\n  serial:      ${signed.serialNumber}\n` +
          `  fingerprint: SHA256 ${signed.fingerprint256}\n  certificate: ${resolve(process.cwd(), opts.out)}\n`,
      );
    } else {
      process.stdout.write(signed.certPem);
      process.stderr.write(`signed ${profile} certificate for ${signed.commonName}, serial ${signed.serialNumber}\n`);
    }
  });

  addRootKeyOptions(
    addDataDirOption(
      cert
        .command('revoke')
        .description('revoke a certificate and re-sign the CRL at once')
        .argument('[serial]', 'serial number (hex, as `cert list` shows it)')
        .option('--cert <file>', 'the certificate to revoke, instead of its serial')
        .option('--reason <reason>', 'unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, …'),
    ),
    true,
  ).action(async (serialArg: string | undefined, opts: RootKeyOptions & { cert?: string; reason?: string }) => {
    if ((serialArg === undefined) === (opts.cert === undefined)) throw usage('give either a SERIAL or --cert FILE');
    const { REVOCATION_REASONS, describeCertificate } = await import('../pki/index.js');
    const reason = opts.reason;
    if (reason !== undefined && !(REVOCATION_REASONS as readonly string[]).includes(reason)) {
      throw usage(`--reason must be one of ${REVOCATION_REASONS.join(', ')}, got "${reason}"`);
    }
    const serial = serialArg ?? describeCertificate(await readInput(opts.cert!, 'certificate file')).serialNumber;
    const dataDir = resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR);
    const revoke = (): Promise<RevokeResult> => withPki(opts, (pki) => pki.revoke(serial, reason as (typeof REVOCATION_REASONS)[number] | undefined));
    const recorded = (out: RevokeResult): Record<string, unknown> => ({ result: out.result, commonName: out.record.commonName, ...(reason !== undefined ? { reason } : {}) });
    const out = await auditedChange(dataDir, 'cert.revoke', serial, revoke, recorded);
    if (out.result === 'already-revoked') {
      process.stdout.write(`Certificate ${out.record.serialNumber} (${out.record.commonName}) was already revoked at ${out.record.revokedAt?.toISOString() ?? '?'}; nothing changed\n`);
      return;
    }
    process.stdout.write(`Revoked ${out.record.serialNumber} (${out.record.commonName})${reason !== undefined ? `, reason ${reason}` : ''}; CRL re-signed: ${out.crlPath}\n`);
  });

  addDataDirOption(
    cert
      .command('list')
      .description('list issued certificates')
      .option('--status <status>', 'valid or revoked')
      .option('--expiring-within <duration>', 'only those expiring within e.g. 30d, 12h, 2w')
      .option('--json', 'JSON array'),
  ).action(async (opts: RootKeyOptions & { status?: string; expiringWithin?: string; json?: boolean }) => {
    if (opts.status !== undefined && opts.status !== 'valid' && opts.status !== 'revoked') throw usage(`--status must be valid or revoked, got "${opts.status}"`);
    const within = opts.expiringWithin !== undefined ? parseDuration(opts.expiringWithin, '--expiring-within') : undefined;
    const records = await withPki(opts, (pki) =>
      pki.list({
        ...(opts.status !== undefined ? { status: opts.status as 'valid' | 'revoked' } : {}),
        ...(within !== undefined ? { expiringBefore: new Date(Date.now() + within) } : {}),
      }),
    );
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(records.map((r) => toJson(r, false)), null, 2)}\n`);
      return;
    }
    const rows = records.map((r) => [r.serialNumber, r.status, r.kind, r.notAfter.toISOString().slice(0, 10), r.commonName]);
    const header = ['SERIAL', 'STATUS', 'KIND', 'EXPIRES', 'COMMON NAME'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const fmt = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
    process.stdout.write(`${[fmt(header), ...rows.map(fmt)].join('\n')}\n`);
  });

  addDataDirOption(
    cert
      .command('show')
      .description('show one certificate from the inventory')
      .argument('<serial>', 'serial number (hex)')
      .option('--json', 'JSON object (with the PEM)'),
  ).action(async (serial: string, opts: RootKeyOptions & { json?: boolean }) => {
    const r = await withPki(opts, (pki) => pki.show(serial));
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(toJson(r, true), null, 2)}\n`);
      return;
    }
    process.stdout.write(
      [
        `serial:      ${r.serialNumber}`,
        `kind:        ${r.kind}`,
        `subject:     ${r.subject}`,
        `sans:        ${r.sans.length > 0 ? r.sans.join(', ') : '-'}`,
        `fingerprint: SHA256 ${r.fingerprint256}`,
        `not before:  ${r.notBefore.toISOString()}`,
        `not after:   ${r.notAfter.toISOString()}`,
        `status:      ${r.status}${r.revokedAt !== null ? ` since ${r.revokedAt.toISOString()}${r.reason !== null ? ` (${r.reason})` : ''}` : ''}`,
        '',
      ].join('\n'),
    );
  });
}
