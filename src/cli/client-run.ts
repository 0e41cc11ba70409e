/**
 * Runs one `bastion pub` / `bastion sub` command over a connection. Owns: connecting with
 * reconnect off, watching the connection (errors, close, DISCONNECT from the broker, the
 * -W deadline, SIGINT/SIGTERM), the -d packet log, and disconnecting cleanly; every
 * failure becomes one readable line on stderr plus a non-zero exit code.
 * Must not: publish or subscribe (that is pub.ts / sub.ts), print stack traces, or call
 * process.exit while output may still be pending (except as a last-resort backstop).
 */
import { TLSSocket } from 'node:tls';
import mqtt from 'mqtt';
import { canonicalGroupName, isHybridGroup } from '../core/tls-config.js';
import type { MqttClient, Packet } from 'mqtt';
import { ReasonCode } from '../protocol/reason-codes.js';
import {
  ClientCommandError,
  ClientExitCode,
  describeConnectionError,
  describeReasonCode,
  hex,
  oneLine,
  reportFailure,
  type ClientExitCodeValue,
  type ConnectionContext,
} from './client-errors.js';
import type { CommandRole, ConnectionFlags } from './client-flags.js';
import { buildClientOptions, targetOf } from './client-mqtt-options.js';

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

/** One line on the TLS parameters the broker and this client agreed on (-v, -d). */
function describeTls(socket: TLSSocket, target: string): string {
  const group = socket.getEphemeralKeyInfo();
  const groupName = group !== null && 'name' in group && group.name !== undefined ? canonicalGroupName(group.name) : 'none';
  const kind = isHybridGroup(groupName) ? 'hybrid post-quantum' : 'classic, not post-quantum';
  return `connected to ${target} over ${socket.getProtocol() ?? 'TLS'}, cipher ${socket.getCipher().name}, key exchange ${groupName} (${kind})`;
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
    if ((flags.verbose || flags.debug) && c.stream instanceof TLSSocket) process.stderr.write(`info: ${describeTls(c.stream, target)}\n`);
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
