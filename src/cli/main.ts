#!/usr/bin/env node
/**
 * The `bastion` command. Every failure ends as one readable line on stderr and a
 * non-zero exit, never a stack trace.
 */
import { Command } from 'commander';
import { BastionError } from '../core/errors.js';
import { registerServeCommand } from './serve.js';

function fail(err: unknown): never {
  const message = err instanceof BastionError ? err.message : err instanceof Error ? ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? `address already in use: ${err.message.replace(/^listen EADDRINUSE: address already in use /, '')}` : err.message) : String(err);
  process.stderr.write(`bastion: ${message}\n`);
  process.exit(1);
}

const program = new Command();
program.name('bastion').description('Bastion: a secure-by-default MQTT broker').helpOption('--help', 'show help');
program.exitOverride((err) => {
  process.exit(err.exitCode === 0 ? 0 : 2);
});
registerServeCommand(program);

async function main(): Promise<void> {
  // The broker process does not load the client commands (and MQTT.js with them): that
  // keeps its memory and start-up to what serving needs.
  if (process.argv[2] !== 'serve') {
    const [{ registerPubCommand }, { registerSubCommand }] = await Promise.all([import('./pub.js'), import('./sub.js')]);
    registerPubCommand(program);
    registerSubCommand(program);
    // The PKI commands load the X.509 libraries only when one of them runs.
    const [{ registerCaCommand }, { registerCertCommand }, { registerCrlCommand }, { registerOcspCommand }] = await Promise.all([
      import('./ca.js'),
      import('./cert.js'),
      import('./crl.js'),
      import('./ocsp.js'),
    ]);
    registerCaCommand(program);
    registerCertCommand(program);
    registerCrlCommand(program);
    registerOcspCommand(program);
    // Commands that change a running broker go through its HTTPS admin API.
    const [{ registerClientsCommand }, { registerBansCommand }, { registerAdminCommand }] = await Promise.all([import('./clients.js'), import('./bans.js'), import('./admin-token.js')]);
    registerClientsCommand(program);
    registerBansCommand(program);
    registerAdminCommand(program);
    const { registerUserCommand } = await import('./user.js');
    registerUserCommand(program);
    const { registerAclCommand } = await import('./acl.js');
    registerAclCommand(program);
  }
  await program.parseAsync(process.argv);
}

process.on('uncaughtException', fail);
main().catch(fail);
