/**
 * A byte-level MQTT client for conformance tests (Mosquitto's style): send hand-built
 * bytes or encoded packets, read decoded packets, observe the close. Every wait has a
 * timeout; nothing sleeps.
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import type { Packet } from '../../src/protocol/packets.js';

export class RawClient {
  private readonly socket: net.Socket;
  private readonly parser: mqttPacket.Parser;
  private readonly packets: Packet[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  parseError: Error | null = null;

  private constructor(socket: net.Socket, version: number) {
    this.socket = socket;
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => {
      this.packets.push(p);
      this.wake();
    });
    this.parser.on('error', (e: Error) => {
      this.parseError = e;
      this.wake();
    });
    socket.on('data', (d: Buffer) => this.parser.parse(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s, version)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  send(packet: Packet, version: 3 | 4 | 5 = 4): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: version }));
  }

  private async waitFor(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next packet; fails if the connection closes first. */
  async next(timeoutMs = 3000): Promise<Packet> {
    await this.waitFor(() => this.packets.length > 0 || this.closed, 'a packet', timeoutMs);
    const p = this.packets.shift();
    if (p === undefined) throw new Error('connection closed before a packet arrived');
    return p;
  }

  /** The next packet of a given type, skipping none: fails on anything else. */
  async expect<C extends Packet['cmd']>(cmd: C, timeoutMs = 3000): Promise<Extract<Packet, { cmd: C }>> {
    const p = await this.next(timeoutMs);
    if (p.cmd !== cmd) throw new Error(`expected ${cmd}, got ${p.cmd} ${JSON.stringify(p)}`);
    return p as Extract<Packet, { cmd: C }>;
  }

  /** Waits for the server to close the connection; returns packets received before. */
  async expectClose(timeoutMs = 3000): Promise<Packet[]> {
    await this.waitFor(() => this.closed, 'the connection to close', timeoutMs);
    return this.packets.splice(0);
  }

  /**
   * Proves nothing else was sent: a PINGREQ's PINGRESP must be the very next packet
   * (the server answers in order), so no timed wait is needed.
   */
  async expectNothingBeforePing(version: 3 | 4 | 5 = 4): Promise<void> {
    this.send({ cmd: 'pingreq' }, version);
    const p = await this.next();
    if (p.cmd !== 'pingresp') throw new Error(`unexpected packet ${p.cmd} ${JSON.stringify(p)}`);
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** CONNECT + CONNACK in one step. */
export async function connectRaw(port: number, version: 3 | 4 | 5, clientId: string, extra: Partial<Extract<Packet, { cmd: 'connect' }>> = {}): Promise<{ client: RawClient; connack: Extract<Packet, { cmd: 'connack' }> }> {
  const client = await RawClient.connect(port, version);
  client.send({ cmd: 'connect', protocolId: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 60, ...extra }, version);
  const connack = await client.expect('connack');
  return { client, connack };
}
