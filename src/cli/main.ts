#!/usr/bin/env node
/**
 * The `bastion` command. Every failure ends as one readable line on stderr and a
 * non-zero exit, never a stack trace.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { BastionError } from '../core/errors.js';

function fail(err: unknown): never {
  const message = err instanceof BastionError ? err.message : err instanceof Error ? ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? `address already in use: ${err.message.replace(/^listen EADDRINUSE: address already in use /, '')}` : err.message) : String(err);
  process.stderr.write(`bastion: ${message}\n`);
  process.exit(1);
}

/** Node.js 24 is the oldest line with OpenSSL 3.5 (hybrid ML-KEM key exchange, ML-DSA) and security fixes. */
const MIN_NODE_MAJOR = 24;
const nodeMajor = Number(process.versions.node.split('.')[0]);
if (nodeMajor < MIN_NODE_MAJOR) fail(new Error(`Node.js ${MIN_NODE_MAJOR} or newer is required (this is ${process.version}, which gets no security fixes); see the README's quick start`));

const program = new Command();
program.name('bastion').description('Bastion: a secure-by-default MQTT broker').helpOption('--help', 'show help');
// The version of the package this file was installed from: dist/src/cli/main.js sits three
// levels below package.json both in a checkout and in an installed package.
const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
program.version(pkg.version, '--version', 'print the version');
program.exitOverride((err) => {
  process.exit(err.exitCode === 0 ? 0 : 2);
});
type Register = (program: Command) => void;

/**
 * Every command, loaded on demand: a command loads only its own module (`serve` the whole
 * broker, ~0.6 s of module loading that no other command should pay; the client commands
 * MQTT.js, the PKI commands the X.509 libraries, `acl` the rule engine), so each starts
 * with what it needs. Help, no command or an unknown command loads them all, so help
 * lists every command and commander names the unknown one.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  serve: async () => (await import('./serve.js')).registerServeCommand,
  pub: async () => (await import('./pub.js')).registerPubCommand,
  sub: async () => (await import('./sub.js')).registerSubCommand,
  ca: async () => (await import('./ca.js')).registerCaCommand,
  cert: async () => (await import('./cert.js')).registerCertCommand,
  crl: async () => (await import('./crl.js')).registerCrlCommand,
  ocsp: async () => (await import('./ocsp.js')).registerOcspCommand,
  // Commands that change a running broker go through its HTTPS admin API.
  clients: async () => (await import('./clients.js')).registerClientsCommand,
  bans: async () => (await import('./bans.js')).registerBansCommand,
  admin: async () => (await import('./admin-token.js')).registerAdminCommand,
  user: async () => (await import('./user.js')).registerUserCommand,
  acl: async () => (await import('./acl.js')).registerAclCommand,
  provision: async () => (await import('./provision.js')).registerProvisionCommand,
  // Simulated devices over the device SDK, as a fleet would provision and connect.
  device: async () => (await import('./device.js')).registerDeviceCommand,
  // Reads <data-dir>/audit.db directly (WAL: alongside a running broker).
  audit: async () => (await import('./audit.js')).registerAuditCommand,
  ota: async () => (await import('./ota.js')).registerOtaCommand,
  defender: async () => (await import('./defender.js')).registerDefenderCommand,
};

async function main(): Promise<void> {
  const name = process.argv[2];
  // `--version` needs no command module.
  const wanted = name === '--version' ? [] : name !== undefined && Object.hasOwn(COMMANDS, name) ? [COMMANDS[name]!] : Object.values(COMMANDS);
  for (const register of await Promise.all(wanted.map((load) => load()))) register(program);
  await program.parseAsync(process.argv);
}

process.on('uncaughtException', fail);
main().catch(fail);
