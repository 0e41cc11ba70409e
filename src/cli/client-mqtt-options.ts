/**
 * MQTT.js options for the client commands. Owns: turning the checked connection flags
 * into MQTT.js (and Node TLS) options: TLS unless --plain, certificate verification, the
 * TLS 1.2 floor, reading the PEM files, the default port, reconnect off.
 * Must not: connect (that is client-run.ts).
 */
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type { IClientOptions } from 'mqtt';
import { CLIENT_TLS_GROUPS } from '../core/tls-config.js';
import { fileError } from './client-errors.js';
import type { CommandRole, ConnectionFlags } from './client-flags.js';

async function readPemFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw fileError(`${flag} file`, path, err);
  }
}

export function defaultPort(flags: ConnectionFlags): number {
  return flags.port ?? (flags.plain ? 1883 : 8883);
}

export function targetOf(flags: ConnectionFlags): string {
  return `${flags.host}:${defaultPort(flags)}`;
}

/** Builds MQTT.js options: TLS unless --plain, reconnect off, clean start. */
export async function buildClientOptions(
  flags: ConnectionFlags,
  role: CommandRole,
): Promise<IClientOptions & Pick<TlsConnectionOptions, 'minVersion' | 'ecdhCurve'>> {
  // MQTT.js hands its options to tls.connect, so Node's TLS options apply as well.
  const options: IClientOptions & Pick<TlsConnectionOptions, 'minVersion' | 'ecdhCurve'> = {
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
    // Hybrid post-quantum key exchange first (X25519MLKEM768), classic groups after it.
    options.ecdhCurve = CLIENT_TLS_GROUPS;
    if (flags.cafile !== undefined) options.ca = await readPemFile('--cafile', flags.cafile);
    if (flags.cert !== undefined) options.cert = await readPemFile('--cert', flags.cert);
    if (flags.key !== undefined) options.key = await readPemFile('--key', flags.key);
  }
  return options;
}
