/**
 * Raw MQTT publishers for the flow-control and slow-client tests: a plain TCP client that
 * sends its CONNECT without waiting, and the loop that writes one frame as fast as the
 * socket takes it (honouring its backpressure). Must not: parse replies or assert.
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

/** Opens a TCP connection to 127.0.0.1:`port` and writes an MQTT 3.1.1 clean-session CONNECT. */
export function rawConnect(port: number, clientId: string): net.Socket {
  const s = net.connect(port, '127.0.0.1');
  s.write(mqttPacket.generate({ cmd: 'connect', clientId, protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 60 }));
  return s;
}

/** Writes `count` copies of `frame`, waiting for 'drain' whenever the socket says so; resolves when all are written. */
export function pump(socket: net.Socket, frame: Buffer, count: number): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    const go = (): void => {
      while (sent < count) {
        sent++;
        if (!socket.write(frame)) {
          socket.once('drain', go);
          return;
        }
      }
      resolve();
    };
    go();
  });
}
