#!/usr/bin/env node
/**
 * A provisioned device at work (bastion-mqtt/device): it connects with the identity that
 * provision-with-claim.mjs or provision-with-token.mjs stored in --dir (mutual TLS, client
 * id = its identity), listens on devices/<identity>/commands, and publishes --count
 * telemetry messages (QoS 1) to devices/<identity>/telemetry, one every --interval-ms.
 *
 * What the SDK does on its own meanwhile: messages published while the broker is away
 * wait in a bounded offline queue and go out in order after the reconnect; when the broker
 * says the certificate is due for renewal (CONNACK property or renewal-due notice), a new
 * key is made, the new certificate stored in --dir and the device reconnects with it.
 *
 *   node examples/telemetry-device.mjs --url mqtts://127.0.0.1:8883 \
 *     --ca bastion-data/pki/root.crt --dir ./device-identity --count 5 --interval-ms 1000
 *
 * --count 0 runs until Ctrl-C. Environment: BASTION_URL, BASTION_CA, DEVICE_DIR. Prints
 * one line per event (`connected as …`, `published 1/5 …`) and exits 0 once every message
 * was acknowledged, or one error line and 1.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { BastionDevice, FileIdentityStore } from 'bastion-mqtt/device';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.BASTION_URL },
    ca: { type: 'string', default: process.env.BASTION_CA },
    dir: { type: 'string', default: process.env.DEVICE_DIR ?? './device-identity' },
    count: { type: 'string', default: '3' },
    'interval-ms': { type: 'string', default: '1000' },
  },
});
if (values.url === undefined || values.ca === undefined) {
  console.error('error: --url and --ca are required (see the comment at the top of this file)');
  process.exit(2);
}
const count = Number(values.count);
const intervalMs = Number(values['interval-ms']);

const device = new BastionDevice({ url: values.url, ca: readFileSync(values.ca), store: new FileIdentityStore(values.dir) });
device.on('connected', ({ identity }) => console.log(`connected as ${identity}`));
device.on('disconnected', ({ reason, reconnecting }) => console.log(`disconnected: ${reason}${reconnecting ? ' (reconnecting)' : ''}`));
device.on('renewal-due', ({ notAfter }) => console.log(`certificate renewal due (valid until ${notAfter?.toISOString() ?? '?'})`));
device.on('renewed', ({ certificateId, notAfter }) => console.log(`certificate renewed: ${certificateId}, valid until ${notAfter.toISOString()}`));
device.on('message', ({ topic, payload }) => console.log(`command on ${topic}: ${payload.toString()}`));
device.on('error', (err) => console.error(`warning: ${err.message}`));

let stopping = false;
process.once('SIGINT', () => {
  stopping = true;
});

try {
  await device.connect();
  const identity = device.identity;
  await device.subscribe(`devices/${identity}/commands`, { qos: 1 });
  for (let i = 1; (count === 0 || i <= count) && !stopping; i++) {
    const topic = `devices/${identity}/telemetry`;
    const reading = { seq: i, temperature: Math.round((20 + Math.random() * 5) * 10) / 10, at: new Date().toISOString() };
    // Resolves at the PUBACK; while offline the message waits in the queue.
    await device.publish(topic, JSON.stringify(reading), { qos: 1 });
    console.log(`published ${i}${count === 0 ? '' : `/${count}`} to ${topic}`);
    if (intervalMs > 0 && (count === 0 || i < count)) await delay(intervalMs);
  }
  await device.close();
} catch (err) {
  console.error(`error: ${err.message}`);
  await device.close();
  process.exit(1);
}
