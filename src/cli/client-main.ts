#!/usr/bin/env node
/**
 * Debugging entry with only the client commands: `node dist/src/cli/client-main.js pub|sub ...`.
 * The integration tests run it as a child process. Owns: nothing but wiring; the real
 * `bastion` program is main.ts.
 */
import { Command } from 'commander';
import { registerPubCommand } from './pub.js';
import { registerSubCommand } from './sub.js';

const program = new Command('bastion').description('Bastion MQTT client commands (pub, sub)');
registerPubCommand(program);
registerSubCommand(program);
await program.parseAsync(process.argv);
