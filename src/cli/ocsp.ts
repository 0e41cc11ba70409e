/**
 * `bastion ocsp serve`: the OCSP responder (RFC 6960 over HTTP) for the PKI of the data
 * directory, answering from the live inventory until SIGINT/SIGTERM. The broker can run
 * the same responder itself (config `pki.ocsp`).
 */
import type { Command } from 'commander';
import { pino } from 'pino';
import { addDataDirOption, pkiDirFrom, rootKeyPassphrase, usage, type RootKeyOptions } from './pki-cli.js';

interface OcspServeOptions extends RootKeyOptions {
  host: string;
  port: string;
  logLevel?: string;
}

export function registerOcspCommand(program: Command): void {
  const ocsp = program.command('ocsp').description('the OCSP responder');
  addDataDirOption(
    ocsp
      .command('serve')
      .description('answer OCSP requests (POST application/ocsp-request, GET /<base64>) from the inventory')
      .option('--host <host>', 'address to listen on', '127.0.0.1')
      .option('--port <port>', 'port (0 picks a free one)', '8888')
      .option('--log-level <level>', 'trace|debug|info|warn|error|silent', 'warn'),
  ).action(async (opts: OcspServeOptions) => {
    const port = Number(opts.port);
    if (!/^\d{1,5}$/.test(opts.port) || port > 65535) throw usage(`invalid --port ${opts.port}`);
    const { startPkiOcspResponder } = await import('../server/pki-ocsp.js');
    const logger = pino({ level: opts.logLevel ?? 'warn' }, pino.destination(2));
    const responder = await startPkiOcspResponder({
      host: opts.host,
      port,
      pkiDir: pkiDirFrom(opts),
      logger,
      access: { passphrase: await rootKeyPassphrase(opts) },
    });
    const shutdown = (): void => {
      responder.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
    const shownHost = responder.host.includes(':') ? `[${responder.host}]` : responder.host;
    process.stdout.write(`OCSP responder listening on http://${shownHost}:${responder.port}/\n`);
  });
}
