/**
 * What ran a bench, for the report's first line and its JSON: the versions of the system
 * OpenSSL (which Debian's Mosquitto links), Mosquitto and nats-server. Owns: asking each
 * binary once, with a timeout; the host block of every report. Must not: fail a bench (an
 * unknown version is null).
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';

function output(bin: string, args: string[]): string | null {
  try {
    const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 5000 });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`;
  } catch {
    return null;
  }
}

/**
 * The system OpenSSL library (`openssl version`'s "Library:"), the one Debian's
 * /usr/sbin/mosquitto links; Bastion and the generator use Node's own (process.versions.openssl).
 */
export function systemOpensslVersion(): string | null {
  const out = output('openssl', ['version']);
  if (out === null) return null;
  return /Library: OpenSSL (\S+)/.exec(out)?.[1] ?? /^OpenSSL (\S+)/.exec(out)?.[1] ?? null;
}

export function mosquittoVersion(bin: string): string | null {
  const out = output(bin, ['-h']);
  return out === null ? null : (/mosquitto version (\S+)/.exec(out)?.[1] ?? null);
}

/** `nats-server --version` prints `nats-server: v2.9.10`. */
export function natsServerVersion(bin: string): string | null {
  const out = output(bin, ['--version']);
  return out === null ? null : (/v(\d+\.\d+\.\d+\S*)/.exec(out)?.[1] ?? null);
}

/** The machine and versions a report names (the same block in every bench's JSON). */
export interface HostInfo {
  cpus: number;
  cpuModel: string;
  /** process.version of the generator and of Bastion (both run on the same Node). */
  node: string;
  /** process.versions.openssl: the OpenSSL in that Node. */
  openssl: string;
  platform: string;
  mosquitto: string | null;
  /** The system OpenSSL library, which Debian's Mosquitto links. */
  systemOpenssl: string | null;
}

/** This machine, with Mosquitto's versions when `mosquittoBin` is given (it ran). */
export function hostInfo(mosquittoBin: string | null): HostInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    node: process.version,
    openssl: process.versions.openssl,
    platform: `${os.platform()} ${os.release()}`,
    mosquitto: mosquittoBin !== null ? mosquittoVersion(mosquittoBin) : null,
    systemOpenssl: mosquittoBin !== null ? systemOpensslVersion() : null,
  };
}
