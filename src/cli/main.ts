#!/usr/bin/env node
/**
 * The `bastion` command. Every failure ends as one readable line on stderr and a
 * non-zero exit, never a stack trace.
 */
import { Command } from 'commander';
import { BastionError } from '../core/errors.js';
import { registerServeCommand } from './serve.js';
import { registerPubCommand } from './pub.js';
import { registerSubCommand } from './sub.js';

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
registerPubCommand(program);
registerSubCommand(program);

process.on('uncaughtException', fail);
program.parseAsync(process.argv).catch(fail);
