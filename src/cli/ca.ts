/**
 * `bastion ca`: create the root CA (`init`), the intermediate that issues from then on
 * (`intermediate`), move the root key off the machine (`export-root`), store the OCSP URL
 * new certificates carry (`set-ocsp-url`), and show the CA state (`show`).
 */
import type { Command } from 'commander';
import { cliName } from './cli-name.js';
import {
  addDataDirOption,
  addRootKeyOptions,
  parseDays,
  parseKeyAlgorithm,
  pkiDirFrom,
  rootKeyPassphrase,
  usage,
  withPki,
  type RootKeyOptions,
} from './pki-cli.js';

interface CaInitOptions extends RootKeyOptions {
  cn?: string;
  key?: string;
  days?: string;
}

const DEFAULT_ROOT_CN = 'Bastion Root CA';

export function registerCaCommand(program: Command): void {
  const ca = program.command('ca').description('the certificate authority: root, intermediate, root key custody');

  addRootKeyOptions(
    addDataDirOption(
      ca
        .command('init')
        .description('create the root CA (refuses to overwrite an existing one)')
        .option('--cn <name>', `root CA common name (default "${DEFAULT_ROOT_CN}")`)
        .option('--key <alg>', 'ec-p256 (default), ec-p384, rsa-2048 or rsa-3072')
        .option('--days <n>', 'lifetime in days (default 3650)'),
    ),
    false,
  ).action(async (opts: CaInitOptions) => {
    const { PkiService } = await import('../server/pki-service.js');
    const keyAlgorithm = parseKeyAlgorithm(opts.key);
    const days = parseDays(opts.days);
    const passphrase = await rootKeyPassphrase(opts);
    const pki = await PkiService.init(pkiDirFrom(opts), {
      commonName: opts.cn ?? DEFAULT_ROOT_CN,
      rootKeyPassphrase: passphrase,
      ...(keyAlgorithm !== undefined ? { keyAlgorithm } : {}),
      ...(days !== undefined ? { days } : {}),
    });
    try {
      const status = await pki.status();
      const root = status.root!;
      process.stdout.write(
        `Created root CA "${root.commonName}" in ${pki.layout.dir}\n` +
          `  serial:      ${root.serialNumber}\n` +
          `  fingerprint: SHA256 ${root.fingerprint256}\n` +
          `  expires:     ${root.notAfter.toISOString()}\n` +
          `  certificate: ${pki.layout.rootCert}\n` +
          `  key:         ${pki.layout.rootKey}${passphrase !== undefined ? ' (encrypted)' : ''}\n` +
          `Next: \`${cliName()} ca intermediate --cn NAME\` so the root key can go offline.\n`,
      );
    } finally {
      pki.close();
    }
  });

  addRootKeyOptions(
    addDataDirOption(
      ca
        .command('intermediate')
        .description('create the intermediate CA, signed by the root; it issues from then on')
        .requiredOption('--cn <name>', 'intermediate CA common name')
        .option('--key <alg>', 'ec-p256 (default), ec-p384, rsa-2048 or rsa-3072')
        .option('--days <n>', 'lifetime in days (default 1825, never past the root)'),
    ),
    true,
  ).action(async (opts: CaInitOptions) => {
    const keyAlgorithm = parseKeyAlgorithm(opts.key);
    const days = parseDays(opts.days);
    await withPki(opts, async (pki) => {
      const rec = await pki.createIntermediate({
        commonName: opts.cn!,
        ...(keyAlgorithm !== undefined ? { keyAlgorithm } : {}),
        ...(days !== undefined ? { days } : {}),
      });
      process.stdout.write(
        `Created intermediate CA "${rec.commonName}"\n` +
          `  serial:      ${rec.serialNumber}\n` +
          `  fingerprint: SHA256 ${rec.fingerprint256}\n` +
          `  expires:     ${rec.notAfter.toISOString()}\n` +
          `  certificate: ${pki.layout.intermediateCert}\n` +
          `  chain:       ${pki.layout.caChain}\n`,
      );
    });
  });

  addDataDirOption(
    ca
      .command('export-root')
      .description('move the root key off this machine: write it to DIR and delete it from the data dir')
      .requiredOption('--out <dir>', 'directory to write root.key into (e.g. removable media)'),
  ).action(async (opts: RootKeyOptions & { out: string }) => {
    await withPki(opts, async (pki) => {
      const path = await pki.exportRootKey(opts.out);
      process.stdout.write(
        `Root key written to ${path} and removed from ${pki.layout.dir}.\n` +
          'Issuing continues with the intermediate. Creating an intermediate or re-signing the root CRL now needs --root-key FILE.\n',
      );
    });
  });

  addDataDirOption(
    ca
      .command('set-ocsp-url')
      .description('store the OCSP responder URL that certificates issued from now on carry')
      .argument('[url]', 'e.g. http://127.0.0.1:8888/')
      .option('--clear', 'issue without an OCSP URL again'),
  ).action(async (url: string | undefined, opts: RootKeyOptions & { clear?: boolean }) => {
    if ((url === undefined) === (opts.clear !== true)) throw usage('give either a URL or --clear');
    await withPki(opts, (pki) => {
      pki.setOcspUrl(url ?? null);
      process.stdout.write(url !== undefined ? `Certificates issued from now on carry OCSP URL ${url}\n` : 'OCSP URL cleared\n');
    });
  });

  addDataDirOption(ca.command('show').description('show the root and intermediate CAs and where the root key is')).action(async (opts: RootKeyOptions) => {
    await withPki(opts, async (pki) => {
      const s = await pki.status();
      const line = (label: string, r: typeof s.root): string =>
        r === undefined ? `${label}: none\n` : `${label}: ${r.commonName} (serial ${r.serialNumber}, ${r.status}, expires ${r.notAfter.toISOString()})\n`;
      process.stdout.write(
        line('root        ', s.root) +
          line('intermediate', s.intermediate) +
          `root key    : ${s.rootKeyOnline ? pki.layout.rootKey : 'offline'}\n` +
          `ocsp url    : ${s.ocspUrl ?? 'none'}\n`,
      );
    });
  });
}
