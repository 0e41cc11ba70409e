/**
 * Shared option handling for the `bastion pub` and `bastion sub` client commands.
 * Owns: the connection flags (host, port, TLS material, credentials, protocol version,
 * keepalive, timeout, debug), turning them into MQTT.js options, connecting with
 * reconnect off, watching the connection, and turning every failure into one readable
 * line on stderr plus a non-zero exit code.
 * Must not: publish or subscribe (that is pub.ts / sub.ts), print stack traces, or call
 * process.exit while output may still be pending (except as a last-resort backstop).
 */
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { Command, InvalidArgumentError, Option, type OptionValues } from 'commander';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient, Packet } from 'mqtt';
import { BastionError } from '../core/errors.js';
import { ReasonCode, V3ConnackCode } from '../protocol/reason-codes.js';

/** Exit codes of the client commands. */
export const ClientExitCode = {
  Success: 0,
  /** Any failure: connection, TLS, CONNACK, publish/subscribe refusal, bad input file. */
  Failure: 1,
  /** `-W/--timeout` elapsed: 27 is what mosquitto_pub/sub return (MOSQ_ERR_TIMEOUT). */
  Timeout: 27,
  /** SIGINT/SIGTERM before the connection was established (128 + SIGINT). */
  Interrupted: 130,
} as const;

export type ClientExitCodeValue = (typeof ClientExitCode)[keyof typeof ClientExitCode];

/** MQTT protocol level on the wire: 4 is MQTT 3.1.1, 5 is MQTT 5.0. */
export type ProtocolLevel = 4 | 5;

export type Qos = 0 | 1 | 2;

/** A failure the client commands report as one line; never carries a stack to the user. */
export class ClientCommandError extends BastionError {
  readonly exitCode: ClientExitCodeValue;
  constructor(code: string, message: string, exitCode: ClientExitCodeValue = ClientExitCode.Failure) {
    super(code, message);
    this.name = 'ClientCommandError';
    this.exitCode = exitCode;
  }
}

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

// ---------------------------------------------------------------------------------------
// Error descriptions: one line each.

function humanize(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .replace(/\bqos\b/g, 'QoS');
}

const v5ReasonNames: ReadonlyMap<number, string> = new Map(
  Object.entries(ReasonCode).map(([name, code]) => [code, humanize(name)] as const),
);
const v3ConnackNames: ReadonlyMap<number, string> = new Map(
  Object.entries(V3ConnackCode).map(([name, code]) => [code, humanize(name)] as const),
);

function hex(code: number): string {
  return `0x${code.toString(16).padStart(2, '0')}`;
}

/** "not authorized (0x87)": an MQTT 5 reason code (or a 3.1.1 SUBACK failure 0x80) by name. */
export function describeReasonCode(code: number): string {
  return `${v5ReasonNames.get(code) ?? 'unknown reason code'} (${hex(code)})`;
}

/** A CONNACK refusal by name: MQTT 5 reason codes, or 3.1.1 return codes 1-5. */
export function describeConnackCode(code: number, level: ProtocolLevel): string {
  if (level === 5) return describeReasonCode(code);
  return `${v3ConnackNames.get(code) ?? 'unknown return code'} (${hex(code)})`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

interface NodeErrorFields {
  code?: unknown;
  reason?: unknown;
}

function errorCode(err: Error): string | undefined {
  const { code } = err as Error & NodeErrorFields;
  return typeof code === 'string' ? code : undefined;
}

/** Certificate verification failures reported by Node's TLS client. */
const certificateVerifyCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_PURPOSE',
]);

function describeTlsError(err: Error, code: string, target: string): string {
  const { reason } = err as Error & NodeErrorFields;
  const detail = typeof reason === 'string' ? reason : oneLine(err.message);
  if (certificateVerifyCodes.has(code)) {
    return `TLS handshake with ${target} failed: the broker certificate is not trusted (${code}: ${oneLine(err.message)}); pass the broker's CA with --cafile`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID' || code === 'CERT_REVOKED') {
    return `TLS handshake with ${target} failed: the broker certificate is not valid (${code}: ${oneLine(err.message)})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `TLS handshake with ${target} failed: the broker certificate does not name this host (${oneLine(err.message)})`;
  }
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' || /handshake failure/.test(detail)) {
    return `TLS handshake with ${target} failed: the broker requires a client certificate (${detail}); pass --cert and --key`;
  }
  if (/alert (bad certificate|unknown ca|certificate unknown|certificate expired|certificate revoked|unsupported certificate|access denied|decrypt error)/.test(detail)) {
    return `TLS handshake with ${target} failed: the broker rejected the client certificate (${detail})`;
  }
  if (/wrong version number|packet length too long|record layer failure/.test(detail)) {
    return `TLS handshake with ${target} failed: ${detail}; is this a plain-TCP port? (use --plain)`;
  }
  return `TLS handshake with ${target} failed: ${detail} (${code})`;
}

export interface ConnectionContext {
  /** "host:port", for the message. */
  target: string;
  level: ProtocolLevel;
  plain: boolean;
  connected: boolean;
}

/** Turns an error from MQTT.js or the socket under it into one line, naming the target. */
export function describeConnectionError(err: Error, ctx: ConnectionContext): string {
  const { target, level, connected } = ctx;
  const code = errorCode(err);
  const numericCode = (err as Error & NodeErrorFields).code;
  if (!connected && typeof numericCode === 'number' && /^Connection refused/.test(err.message)) {
    return `the broker at ${target} refused the connection: ${describeConnackCode(numericCode, level)}`;
  }
  if (typeof numericCode === 'number') {
    return `${oneLine(err.message)} (${hex(numericCode)})`;
  }
  if (err.message === 'connack timeout') return `no CONNACK from ${target} in time`;
  if (err.message === 'TLS not authorized') {
    return `TLS handshake with ${target} failed: the broker certificate is not trusted`;
  }
  switch (code) {
    case 'ECONNREFUSED':
      return `connection refused by ${target} (is the broker running and listening on that port?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve host of ${target} (${code})`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot reach ${target} (${code})`;
    case 'ECONNRESET':
    case 'EPIPE':
      if (connected) return `connection to ${target} lost (${code})`;
      return `connection to ${target} reset during connect (${code}); ${
        ctx.plain ? 'if that port expects TLS, drop --plain' : 'if that port is plain TCP, use --plain'
      }`;
    case undefined:
      return oneLine(err.message);
    default:
      if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO' || /^[A-Z_]+$/.test(code) && code.includes('CERT')) {
        return describeTlsError(err, code, target);
      }
      return `${oneLine(err.message)} (${code})`;
  }
}

// ---------------------------------------------------------------------------------------
// Connecting.

async function readPemFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw fileError(`${flag} file`, path, err);
  }
}

/** One line for a file that cannot be read: "cannot read --cafile file 'x': no such file or directory". */
export function fileError(what: string, path: string, err: unknown): ClientCommandError {
  const code = err instanceof Error ? errorCode(err) : undefined;
  const why =
    code === 'ENOENT'
      ? 'no such file or directory'
      : code === 'EACCES'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'is a directory'
          : err instanceof Error
            ? oneLine(err.message)
            : String(err);
  return new ClientCommandError('ERR_CLI_FILE', `cannot read ${what} '${path}': ${why}`);
}

export function defaultPort(flags: ConnectionFlags): number {
  return flags.port ?? (flags.plain ? 1883 : 8883);
}

function targetOf(flags: ConnectionFlags): string {
  return `${flags.host}:${defaultPort(flags)}`;
}

/** Builds MQTT.js options: TLS unless --plain, reconnect off, clean start. */
export async function buildClientOptions(
  flags: ConnectionFlags,
  role: CommandRole,
): Promise<IClientOptions & Pick<TlsConnectionOptions, 'minVersion'>> {
  // MQTT.js hands its options to tls.connect, so Node's TLS options apply as well.
  const options: IClientOptions & Pick<TlsConnectionOptions, 'minVersion'> = {
    protocol: flags.plain ? 'mqtt' : 'mqtts',
    host: flags.host,
    port: defaultPort(flags),
    clientId: flags.clientId ?? `bastion-${role}-${randomBytes(4).toString('hex')}`,
    protocolVersion: flags.protocolLevel,
    clean: true,
    keepalive: flags.keepalive,
    // A failure must end the command, not start a retry loop.
    reconnectPeriod: 0,
    connectTimeout: 30_000,
  };
  if (flags.username !== undefined) options.username = flags.username;
  if (flags.password !== undefined) options.password = flags.password;
  if (!flags.plain) {
    // SECURITY: verify the broker certificate unless explicitly told not to; TLS 1.2 floor.
    options.rejectUnauthorized = !flags.insecureSkipVerify;
    options.minVersion = 'TLSv1.2';
    if (flags.cafile !== undefined) options.ca = await readPemFile('--cafile', flags.cafile);
    if (flags.cert !== undefined) options.cert = await readPemFile('--cert', flags.cert);
    if (flags.key !== undefined) options.key = await readPemFile('--key', flags.key);
  }
  return options;
}

function describePacket(packet: Packet): string {
  switch (packet.cmd) {
    case 'connect':
      return `CONNECT (${packet.protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1'}, client id '${packet.clientId}', keepalive ${packet.keepalive})`;
    case 'connack':
      return `CONNACK (${hex(packet.reasonCode ?? packet.returnCode ?? 0)})`;
    case 'publish':
      return `PUBLISH (topic '${packet.topic}', QoS ${packet.qos}, retain ${packet.retain ? 1 : 0}, mid ${packet.messageId ?? 0}, ${Buffer.byteLength(packet.payload)} bytes)`;
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return `${packet.cmd.toUpperCase()} (mid ${packet.messageId ?? 0}${packet.reasonCode !== undefined ? `, ${hex(packet.reasonCode)}` : ''})`;
    case 'subscribe':
      return `SUBSCRIBE (mid ${packet.messageId}, ${packet.subscriptions.map((s) => `'${s.topic}' QoS ${s.qos}`).join(', ')})`;
    case 'suback':
      return `SUBACK (mid ${packet.messageId}, granted ${packet.granted.map((g) => (typeof g === 'number' ? hex(g) : String(g))).join(', ')})`;
    case 'disconnect':
      return `DISCONNECT (${hex(packet.reasonCode ?? 0)})`;
    default:
      return packet.cmd.toUpperCase();
  }
}

/**
 * Prints one line "error: ..." for a failure and sets process.exitCode; returns the code.
 * For failures before a connection exists (an unreadable payload file, for instance).
 */
export function reportFailure(err: unknown): ClientExitCodeValue {
  const exitCode = err instanceof ClientCommandError ? err.exitCode : ClientExitCode.Failure;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`error: ${oneLine(message)}\n`);
  process.exitCode = exitCode;
  return exitCode;
}

/** What a command body gets: the connected client and the checked flags. */
export interface ClientSession {
  client: MqttClient;
  flags: ConnectionFlags;
  /** Writes one line to stderr, prefixed "warning: ". */
  warn(message: string): void;
}

/**
 * Runs one client command: connect (TLS unless --plain), run `body`, disconnect cleanly.
 * Any failure (file, TCP, TLS, CONNACK, lost connection, DISCONNECT from the broker, the
 * -W deadline) becomes one line "error: ..." on stderr and a non-zero process.exitCode.
 * SIGINT/SIGTERM end `body` early and disconnect cleanly (exit 0), like mosquitto_sub;
 * before the connection is up they abort it (exit 130).
 */
export async function runClientCommand(
  role: CommandRole,
  flags: ConnectionFlags,
  body: (session: ClientSession) => Promise<void>,
): Promise<void> {
  const target = targetOf(flags);
  const warn = (message: string): void => {
    process.stderr.write(`warning: ${oneLine(message)}\n`);
  };

  let fail: (err: ClientCommandError) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined); // observed through the races below

  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const onSignal = (): void => stop();
  // Before CONNACK a signal aborts; after it, it ends the body and we disconnect cleanly.
  // `once`: a second signal gets Node's default behaviour and kills the process.
  const interrupted = stopped.then((): never => {
    throw new ClientCommandError('ERR_CLI_INTERRUPTED', 'interrupted before the connection was established', ClientExitCode.Interrupted);
  });
  interrupted.catch(() => undefined);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const deadline =
    flags.timeout === undefined
      ? undefined
      : setTimeout(() => {
          fail(new ClientCommandError('ERR_CLI_TIMEOUT', `timed out after ${flags.timeout} s`, ClientExitCode.Timeout));
        }, Math.ceil(flags.timeout * 1000));

  let client: MqttClient | undefined;
  let ending = false;
  let connected = false;
  const context = (): ConnectionContext => ({ target, level: flags.protocolLevel, plain: flags.plain, connected });
  let exitCode: ClientExitCodeValue = ClientExitCode.Success;
  try {
    if (flags.insecureSkipVerify) {
      warn(
        `--insecure-skip-verify: the certificate of ${target} is NOT verified; anyone on the network path can impersonate the broker`,
      );
    }
    const options = await Promise.race([buildClientOptions(flags, role), failed, interrupted]);
    // manualConnect: every listener (and the -d packet log) is in place before CONNECT goes out.
    const c = mqtt.connect({ ...options, manualConnect: true });
    client = c;
    let lastStreamError: Error | undefined;
    const connectedOnce = new Promise<void>((resolve) => {
      c.once('connect', () => {
        connected = true;
        resolve();
      });
    });
    c.on('error', (err: Error) => {
      if (ending) return;
      fail(new ClientCommandError('ERR_CLI_CONNECTION', describeConnectionError(err, context())));
    });
    c.on('close', () => {
      if (ending) return;
      const why = lastStreamError ? `: ${describeConnectionError(lastStreamError, context())}` : '';
      fail(
        new ClientCommandError(
          'ERR_CLI_CONNECTION',
          connected ? `connection to ${target} lost${why}` : `connection to ${target} closed before CONNACK${why}`,
        ),
      );
    });
    c.on('disconnect', (packet) => {
      if (ending) return;
      fail(
        new ClientCommandError(
          'ERR_CLI_DISCONNECTED',
          `disconnected by the broker at ${target}: ${describeReasonCode(packet.reasonCode ?? ReasonCode.Success)}`,
        ),
      );
    });
    if (flags.debug) {
      const clientId = options.clientId ?? '';
      c.on('packetsend', (packet: Packet) => {
        process.stderr.write(`debug: client ${clientId} sending ${describePacket(packet)}\n`);
      });
      c.on('packetreceive', (packet: Packet) => {
        // Packets that still arrive after our DISCONNECT are not ours to report.
        if (!ending) process.stderr.write(`debug: client ${clientId} received ${describePacket(packet)}\n`);
      });
    }

    c.connect();
    // The first socket/TLS error, for when the socket closes without MQTT.js saying why.
    c.stream.on('error', (err: Error) => {
      lastStreamError ??= err;
    });
    await Promise.race([connectedOnce, failed, interrupted]);
    await Promise.race([body({ client: c, flags, warn }), stopped, failed]);

    // Clean DISCONNECT; the callback runs once the socket is closed, so everything
    // written before (a QoS 0 PUBLISH, the last PUBACK) has been flushed.
    ending = true;
    await Promise.race([new Promise<void>((resolve) => c.end(false, {}, () => resolve())), failed]);
  } catch (err) {
    exitCode = reportFailure(
      err instanceof Error && !(err instanceof ClientCommandError)
        ? new ClientCommandError('ERR_CLI_CONNECTION', describeConnectionError(err, context()))
        : err,
    );
  } finally {
    ending = true;
    if (deadline !== undefined) clearTimeout(deadline);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (client !== undefined && !client.disconnected) client.end(true);
  }
  process.exitCode = exitCode;
  // Backstop: the event loop should drain on its own; if some handle lingers (a stdin
  // that is never closed, a socket stuck half-closed), do not hang.
  setTimeout(() => process.exit(exitCode), 2000).unref();
}
