/**
 * Exit codes and error wording of the `bastion pub` and `bastion sub` client commands.
 * Owns: the exit codes, the one-line error type, describing MQTT reason codes, socket and
 * TLS failures and unreadable files in one readable line, and reporting a failure on
 * stderr with a non-zero exit code.
 * Must not: print stack traces, or call process.exit (client-run.ts decides when to end).
 */
import { BastionError } from '../core/errors.js';
import { ReasonCode, V3ConnackCode } from '../protocol/reason-codes.js';
import type { ProtocolLevel } from './client-flags.js';

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

/** A failure the client commands report as one line; never carries a stack to the user. */
export class ClientCommandError extends BastionError {
  readonly exitCode: ClientExitCodeValue;
  constructor(code: string, message: string, exitCode: ClientExitCodeValue = ClientExitCode.Failure) {
    super(code, message);
    this.name = 'ClientCommandError';
    this.exitCode = exitCode;
  }
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

export function hex(code: number): string {
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

export function oneLine(text: string): string {
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
