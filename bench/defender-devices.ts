/**
 * The simulated devices of the end-to-end defender simulation: MQTT.js clients over real
 * TLS on loopback, each socket bound to the device's own source address (`localAddress`,
 * anywhere in 127.0.0.0/8), so "a new address" and "many failures from one address" are
 * real source addresses to the broker. Owns: connecting (with the device's certificate or
 * with a bad password), publishing, disconnecting, and the counts the simulation's barrier
 * compares with the broker's (messages sent, deliveries received). Must not: wait on a
 * timer for the broker (the barrier reads the broker's counters), or connect beyond
 * loopback.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { DeviceCredential } from './defender-broker.js';

const CONNECT_TIMEOUT_MS = 15_000;

/** Where every client goes, and what the simulation counts across them. */
export class FleetNetwork {
  /** PUBLISH packets written (accepted or not): the broker's `received` counters must reach this. */
  published = 0;
  /** Deliveries expected at the devices, and received. */
  deliveriesExpected = 0;
  deliveriesReceived = 0;
  /** Actions that could not run because their connection was gone (kicked, refused). */
  skipped = 0;
  /** Connections the devices hold open now: the broker's connected count must reach this. */
  open = 0;
  /** Logins refused with a CONNACK code (auth.failure) and connections refused before it (e.g. a ban at accept). */
  loginRefused = 0;
  connectionRefused = 0;

  constructor(
    readonly url: string,
    readonly caPem: string,
  ) {}

  /** Opens a session; resolves on CONNACK success, rejects otherwise. */
  connect(opts: IClientOptions & { localAddress: string }): Promise<MqttClient> {
    const client = mqtt.connect(this.url, { ca: this.caPem, protocolVersion: 5, clean: true, reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS, keepalive: 120, ...opts } as IClientOptions);
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => {
        client.removeAllListeners('connect');
        client.end(true);
        reject(err);
      };
      client.once('connect', () => {
        client.removeAllListeners('error');
        client.removeAllListeners('close');
        client.on('error', () => undefined);
        this.open++;
        client.once('close', () => this.open--);
        resolve(client);
      });
      client.once('error', fail);
      client.once('close', () => fail(new Error('closed before CONNACK')));
    });
  }

  /** A login with a password the broker does not take, from `localAddress`; resolves once refused. */
  async failedLogin(localAddress: string, username: string, password: string): Promise<void> {
    try {
      const c = await this.connect({ localAddress, username, password, clientId: `${username}-login` });
      // Not expected: the listener takes certificates only.
      await c.endAsync();
      throw new Error(`a password login as ${username} was accepted`);
    } catch (err) {
      if (err instanceof Error && err.message.includes('was accepted')) throw err;
      if (err instanceof Error && 'code' in err && typeof err.code === 'number') this.loginRefused++;
      else this.connectionRefused++;
    }
  }
}

/** One device: its certificate, its live session (and a clone's, when one is injected). */
export class SimDevice {
  client: MqttClient | null = null;
  clone: MqttClient | null = null;

  constructor(
    readonly cn: string,
    private readonly credential: DeviceCredential,
    private readonly net: FleetNetwork,
  ) {}

  /** Connects from `remote`, subscribes to its command topics and sends its birth message (40 bytes). */
  async connect(remote: string): Promise<void> {
    if (this.client !== null) await this.disconnect();
    try {
      const client = await this.net.connect({ localAddress: remote, clientId: this.cn, cert: this.credential.cert, key: this.credential.key });
      this.client = client;
      client.on('message', () => this.net.deliveriesReceived++);
      client.once('close', () => {
        if (this.client === client) this.client = null;
      });
      await client.subscribeAsync(`cmd/${this.cn}/#`, { qos: 0 });
      this.publish(`status/${this.cn}`, 40);
    } catch {
      // Refused (e.g. banned): the device stays offline; what it would have sent is skipped.
      this.net.skipped++;
    }
  }

  /** A QoS 0 message of `bytes` (topic + payload, as detection counts them). */
  publish(topic: string, bytes: number): void {
    const c = this.client;
    if (c === null || !c.connected) {
      this.net.skipped++;
      return;
    }
    c.publish(topic, Buffer.alloc(Math.max(1, bytes - topic.length), 0x61), { qos: 0 });
    this.net.published++;
  }

  /** Subscribes to a filter the device may not read; resolves whatever the SUBACK says. */
  async subscribeDenied(filter: string): Promise<void> {
    const c = this.client;
    if (c === null) {
      this.net.skipped++;
      return;
    }
    await c.subscribeAsync(filter, { qos: 0 }).catch(() => undefined);
  }

  async disconnect(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c !== null) await c.endAsync().catch(() => undefined);
  }

  /** A second live session with this device's certificate, another client id, from `remote`. */
  async connectClone(remote: string): Promise<void> {
    try {
      this.clone = await this.net.connect({ localAddress: remote, clientId: `${this.cn}-clone`, cert: this.credential.cert, key: this.credential.key });
    } catch {
      this.net.skipped++;
    }
  }

  async disconnectClone(): Promise<void> {
    const c = this.clone;
    this.clone = null;
    if (c !== null) await c.endAsync().catch(() => undefined);
  }
}
