/**
 * The connection flags shared by the `bastion pub` and `bastion sub` client commands.
 * Owns: declaring the flags (host, port, TLS material, credentials, protocol version,
 * keepalive, timeout, debug), parsing each value, and checking how they combine.
 * Must not: read files, connect, or publish/subscribe (that is pub.ts / sub.ts).
 */
import { Command, InvalidArgumentError, Option, type OptionValues } from 'commander';
import { ClientExitCode } from './client-errors.js';

/** MQTT protocol level on the wire: 4 is MQTT 3.1.1, 5 is MQTT 5.0. */
export type ProtocolLevel = 4 | 5;

export type Qos = 0 | 1 | 2;

/** The connection flags shared by pub and sub, after parsing and checking. */
export interface ConnectionFlags {
  host: string;
  /** Undefined: 8883 with TLS, 1883 with --plain. */
  port: number | undefined;
  clientId: string | undefined;
  protocolLevel: ProtocolLevel;
  username: string | undefined;
  password: string | undefined;
  cafile: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  insecureSkipVerify: boolean;
  plain: boolean;
  keepalive: number;
  /** Seconds; undefined means no deadline. */
  timeout: number | undefined;
  debug: boolean;
  /** -v: also print the connection's TLS version, cipher and key-exchange group to stderr. */
  verbose: boolean;
}

export type CommandRole = 'pub' | 'sub';

// ---------------------------------------------------------------------------------------
// Argument parsers (commander turns InvalidArgumentError into one usage line + exit 1).

function parseIntegerInRange(value: string, min: number, max: number, what: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}.`);
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}.`);
  return n;
}

export function parseQos(value: string): Qos {
  switch (value) {
    case '0':
      return 0;
    case '1':
      return 1;
    case '2':
      return 2;
    default:
      throw new InvalidArgumentError('QoS must be 0, 1 or 2.');
  }
}

export function parsePort(value: string): number {
  return parseIntegerInRange(value, 1, 65535, 'Port');
}

export function parseKeepalive(value: string): number {
  return parseIntegerInRange(value, 0, 65535, 'Keepalive');
}

export function parsePositiveCount(value: string): number {
  return parseIntegerInRange(value, 1, 2 ** 31 - 1, 'Count');
}

export function parseTimeoutSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 2_000_000) {
    throw new InvalidArgumentError('Timeout must be a positive number of seconds.');
  }
  return n;
}

export function parseProtocolVersion(value: string): ProtocolLevel {
  switch (value.toLowerCase()) {
    case '5':
    case 'mqttv5':
      return 5;
    case '311':
    case '3.1.1':
    case 'mqttv311':
      return 4;
    default:
      throw new InvalidArgumentError("Protocol version must be 5 or 311 (MQTT 3.1 is not supported).");
  }
}

/**
 * Creates a client subcommand on `program`. The program is switched to positional options
 * (its own options only before the subcommand name) because the mosquitto-style flags
 * collide with commander's program-level conventions: `bastion pub -V 311` would otherwise
 * be taken as the program's `-V, --version`.
 */
export function createClientCommand(program: Command, name: CommandRole): Command {
  program.enablePositionalOptions();
  return program.command(name);
}

/**
 * Adds the flags shared by pub and sub, and replaces commander's `-h, --help` with
 * `--help` only, because `-h` is the host (as in mosquitto_pub/sub).
 */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .helpOption('--help', 'display help for command')
    .option('-h, --host <host>', 'broker host name or address', 'localhost')
    .option('-p, --port <port>', 'broker port (default: 8883, or 1883 with --plain)', parsePort)
    .option('-i, --id <client-id>', 'client identifier (default: random)')
    .addOption(
      new Option('-V, --protocol-version <version>', 'MQTT protocol version: 5 or 311')
        .default(5, '5')
        .argParser(parseProtocolVersion),
    )
    .option('-u, --username <username>', 'user name')
    .addOption(
      new Option('-P, --password <password>', 'password (or set BASTION_MQTT_PASSWORD, which stays out of `ps`)').env(
        'BASTION_MQTT_PASSWORD',
      ),
    )
    .option('--cafile <file>', 'PEM file of CA certificates that verify the broker (default: system CAs)')
    .option('--cert <file>', 'PEM client certificate for mutual TLS (needs --key)')
    .option('--key <file>', 'PEM private key of --cert')
    .option('--insecure-skip-verify', 'do NOT verify the broker certificate (testing only; prints a warning)', false)
    .option('--plain', 'plain TCP without TLS (TLS is the default)', false)
    .addOption(new Option('-k, --keepalive <seconds>', 'keepalive interval').default(60).argParser(parseKeepalive))
    .option('-W, --timeout <seconds>', `give up after this many seconds (exit ${ClientExitCode.Timeout})`, parseTimeoutSeconds)
    .option('-d, --debug', 'print MQTT packets sent and received to stderr', false);
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function optionalNumber(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}

/**
 * Reads the shared flags from commander's option values and checks how they combine.
 * A bad combination is a usage error: reported through `cmd.error` (one line, exit 1).
 */
export function readConnectionFlags(cmd: Command, opts: OptionValues): ConnectionFlags {
  const protocolLevel: ProtocolLevel = opts['protocolVersion'] === 4 ? 4 : 5;
  const flags: ConnectionFlags = {
    host: optionalString(opts['host']) ?? 'localhost',
    port: optionalNumber(opts['port']),
    clientId: optionalString(opts['id']),
    protocolLevel,
    username: optionalString(opts['username']),
    password: optionalString(opts['password']),
    cafile: optionalString(opts['cafile']),
    cert: optionalString(opts['cert']),
    key: optionalString(opts['key']),
    insecureSkipVerify: opts['insecureSkipVerify'] === true,
    plain: opts['plain'] === true,
    keepalive: optionalNumber(opts['keepalive']) ?? 60,
    timeout: optionalNumber(opts['timeout']),
    debug: opts['debug'] === true,
    verbose: opts['verbose'] === true,
  };
  if (flags.plain) {
    const tlsFlags = [
      flags.cafile !== undefined ? '--cafile' : undefined,
      flags.cert !== undefined ? '--cert' : undefined,
      flags.key !== undefined ? '--key' : undefined,
      flags.insecureSkipVerify ? '--insecure-skip-verify' : undefined,
    ].filter((f): f is string => f !== undefined);
    if (tlsFlags.length > 0) {
      // SECURITY: refuse rather than silently drop TLS material the user thought was in use.
      cmd.error(`error: --plain cannot be combined with ${tlsFlags.join(', ')}`);
    }
  }
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    cmd.error('error: --cert and --key must be given together');
  }
  if (flags.password !== undefined && flags.username === undefined) {
    // [MQTT-3.1.2-22] in 3.1.1: no password without a user name; mosquitto_pub refuses it too.
    cmd.error('error: a password was given but no --username');
  }
  return flags;
}
