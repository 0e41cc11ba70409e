/**
 * One MQTT connection of the device SDK. Owns: reading the broker URL, the TLS options
 * (certificate verification always on, TLS 1.2 floor, hybrid post-quantum key exchange
 * first), connecting once with a deadline and turning every way that can fail into one
 * DeviceError. Must not: reconnect (device.ts decides when), subscribe or publish.
 *
 * SECURITY: only `mqtts://` is accepted, and there is no option to skip verifying the
 * broker's certificate: a device that provisions over an unverified connection hands its
 * claim or token to whoever answers.
 */
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { CLIENT_TLS_GROUPS } from '../core/tls-config.js';
import { DeviceError, hex } from './errors.js';

export interface BrokerAddress {
  host: string;
  port: number;
}

/** `mqtts://host[:port]` (default port 8883); anything else is refused. */
export function parseBrokerUrl(url: string): BrokerAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `broker URL ${JSON.stringify(url)} is not a URL (expected mqtts://host:port)`);
  }
  if (u.protocol !== 'mqtts:') throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `broker URL ${JSON.stringify(url)}: only mqtts:// is supported (TLS is required)`);
  if (u.username !== '' || u.password !== '') throw new DeviceError('ERR_DEVICE_INVALID_INPUT', 'the broker URL must not carry credentials');
  if (u.hostname === '') throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `broker URL ${JSON.stringify(url)} has no host`);
  const port = u.port === '' ? 8883 : Number(u.port);
  // An IPv6 literal comes back in brackets.
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** What proves who the device is at CONNECT. */
export type Credentials =
  | { kind: 'certificate'; certPem: string | Buffer; keyPem: string | Buffer }
  | { kind: 'password'; username: string; password: string };

export interface ConnectionSettings {
  url: string;
  /** PEM of the CA(s) the broker's certificate must chain to. */
  ca: string | Buffer;
  /** TLS server name to check, when it differs from the URL's host. */
  servername?: string;
  clientId: string;
  credentials: Credentials;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
}

type TlsExtras = { minVersion: 'TLSv1.2'; ecdhCurve: string };

/** MQTT.js options: MQTT 5, clean start, MQTT.js's own reconnect off, TLS verified. */
export function clientOptions(s: ConnectionSettings): IClientOptions & TlsExtras {
  const { host, port } = parseBrokerUrl(s.url);
  const options: IClientOptions & TlsExtras = {
    protocol: 'mqtts',
    host,
    port,
    clientId: s.clientId,
    protocolVersion: 5,
    clean: true,
    keepalive: s.keepaliveSeconds ?? 60,
    reconnectPeriod: 0,
    connectTimeout: s.connectTimeoutMs ?? 10_000,
    ca: s.ca,
    // SECURITY: always verify the broker; TLS 1.2 floor; hybrid ML-KEM key exchange first.
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ecdhCurve: CLIENT_TLS_GROUPS,
  };
  if (s.servername !== undefined) options.servername = s.servername;
  if (s.credentials.kind === 'certificate') {
    options.cert = s.credentials.certPem;
    options.key = s.credentials.keyPem;
  } else {
    options.username = s.credentials.username;
    options.password = s.credentials.password;
  }
  return options;
}

export interface OpenConnection {
  client: MqttClient;
  connack: IConnackPacket;
  /** The last error MQTT.js or the socket reported since the CONNACK (to say why a connection closed). */
  lastError(): Error | undefined;
}

function describeFailure(err: Error & { code?: unknown }, target: string): DeviceError {
  if (typeof err.code === 'number') {
    // MQTT.js reports a refused CONNACK as an error whose code is the reason code.
    return new DeviceError('ERR_DEVICE_CONNACK', `${target} refused the connection: ${err.message.replace(/^Connection refused: /, '')} (${hex(err.code)})`, err.code);
  }
  const code = typeof err.code === 'string' ? ` [${err.code}]` : '';
  return new DeviceError('ERR_DEVICE_CONNECTION', `cannot connect to ${target}: ${err.message}${code}`);
}

/**
 * Connects once and waits for the CONNACK; the client is ended on any failure.
 * `setup` runs before the CONNECT goes out (listeners that must see the first packets).
 * The client keeps an `error` listener, so a later socket error never throws.
 */
export async function connectOnce(s: ConnectionSettings, setup?: (client: MqttClient) => void): Promise<OpenConnection> {
  const options = clientOptions(s);
  const target = `mqtts://${options.host}:${options.port}`;
  const timeoutMs = (options.connectTimeout ?? 10_000) + 1000;
  const client = mqtt.connect({ ...options, manualConnect: true });
  let last: Error | undefined;
  client.on('error', (err: Error) => {
    last = err;
  });
  setup?.(client);
  let timer: NodeJS.Timeout | undefined;
  let onConnect: ((p: IConnackPacket) => void) | undefined;
  let onError: ((err: Error) => void) | undefined;
  let onClose: (() => void) | undefined;
  try {
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      timer = setTimeout(() => reject(new DeviceError('ERR_DEVICE_TIMEOUT', `no CONNACK from ${target} within ${timeoutMs} ms`)), timeoutMs);
      onConnect = resolve;
      onError = (err) => reject(describeFailure(err, target));
      // The first TLS error (an unknown CA, a revoked certificate) says why, when the socket
      // closes without MQTT.js reporting one.
      onClose = () => reject(last !== undefined ? describeFailure(last, target) : new DeviceError('ERR_DEVICE_CONNECTION', `${target} closed the connection before CONNACK`));
      client.once('connect', onConnect);
      client.once('error', onError);
      client.once('close', onClose);
      client.connect();
      // Requests and answers (jobs, block gets) are small round trips: Nagle's algorithm held
      // each for an ACK (one device fetched an image at ~8 MiB/s with it, ~27 without).
      (client.stream as { setNoDelay?: (on: boolean) => unknown }).setNoDelay?.(true);
      client.stream.on('error', (err: Error) => {
        last ??= err;
      });
    });
    last = undefined;
    return { client, connack, lastError: () => last };
  } catch (err) {
    client.end(true);
    throw err;
  } finally {
    clearTimeout(timer);
    if (onConnect !== undefined) client.off('connect', onConnect);
    if (onError !== undefined) client.off('error', onError);
    if (onClose !== undefined) client.off('close', onClose);
  }
}

/** Ends a client cleanly (DISCONNECT, flushed), or at once after `timeoutMs`. Never throws. */
export async function endClient(client: MqttClient, timeoutMs = 2000): Promise<void> {
  if (client.disconnected && !client.connected) {
    client.end(true);
    return;
  }
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.end(true);
      resolve();
    }, timeoutMs);
    client.end(false, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
