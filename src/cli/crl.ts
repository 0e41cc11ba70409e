/**
 * `bastion crl`: re-sign the CRLs from the inventory, replace `pki/crl.pem` atomically, and
 * print the PEM (or copy it to `--out`). The root-signed CRL is re-signed too when the
 * root key is at hand (`root.key`, or `--root-key FILE` after `ca export-root`).
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { addDataDirOption, addRootKeyOptions, withPki, type RootKeyOptions } from './pki-cli.js';

export function registerCrlCommand(program: Command): void {
  addRootKeyOptions(
    addDataDirOption(
      program
        .command('crl')
        .description('re-sign the certificate revocation lists into <data-dir>/pki/crl.pem and print them')
        .option('--out <file>', 'also write the CRLs to this file (instead of printing them)'),
    ),
    true,
  ).action(async (opts: RootKeyOptions & { out?: string }) => {
    const result = await withPki(opts, (pki) => pki.writeCrl());
    for (const problem of result.problems) process.stderr.write(`bastion: warning: ${problem}\n`);
    if (opts.out !== undefined) {
      const { writeFileAtomic, CERT_MODE } = await import('../server/pki-files.js');
      const out = resolve(process.cwd(), opts.out);
      await writeFileAtomic(out, result.pem, CERT_MODE);
      process.stdout.write(`CRL written to ${out} and ${result.path}${result.rootCrlRenewed ? '' : ' (root CRL kept: root key offline)'}\n`);
    } else {
      process.stdout.write(result.pem);
    }
  });
}
