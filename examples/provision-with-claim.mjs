#!/usr/bin/env node
/**
 * Provision a device with a claim certificate (bastion-mqtt/device).
 *
 * A claim certificate is a factory credential shared by many devices of one template
 * (`bastion cert issue --profile claim --template sensor`). With it, the device connects over
 * mutual TLS, has the broker certify a key it generates itself, registers against the
 * template and stores its own identity (certificate and key, the key 0600) in --dir.
 * Run it again and it says the device is already provisioned.
 *
 *   node examples/provision-with-claim.mjs \
 *     --url mqtts://127.0.0.1:8883 --ca bastion-data/pki/root.crt \
 *     --claim-cert claim.crt --claim-key claim.key \
 *     --template sensor --parameter serialNumber=ABC123 --dir ./device-identity
 *
 * Every flag can come from the environment instead: BASTION_URL, BASTION_CA,
 * BASTION_CLAIM_CERT, BASTION_CLAIM_KEY, BASTION_TEMPLATE, DEVICE_DIR, and
 * DEVICE_PARAMETERS (name=value,name=value). Then `examples/telemetry-device.mjs --dir …`
 * runs the device. Prints `identity: <identity>` and exits 0, or one error line and 1.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FileIdentityStore, ProvisioningError, provision } from 'bastion-mqtt/device';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.BASTION_URL },
    ca: { type: 'string', default: process.env.BASTION_CA },
    'claim-cert': { type: 'string', default: process.env.BASTION_CLAIM_CERT },
    'claim-key': { type: 'string', default: process.env.BASTION_CLAIM_KEY },
    template: { type: 'string', default: process.env.BASTION_TEMPLATE },
    parameter: { type: 'string', multiple: true, default: (process.env.DEVICE_PARAMETERS ?? '').split(',').filter(Boolean) },
    dir: { type: 'string', default: process.env.DEVICE_DIR ?? './device-identity' },
  },
});

function need(name) {
  if (values[name] === undefined) {
    console.error(`error: --${name} is required (see the comment at the top of this file)`);
    process.exit(2);
  }
  return values[name];
}

const store = new FileIdentityStore(values.dir);
const existing = await store.load();
if (existing !== null) {
  console.log(`already provisioned; identity: ${existing.identity}`);
  process.exit(0);
}

try {
  const result = await provision({
    url: need('url'),
    ca: readFileSync(need('ca')),
    claim: { cert: readFileSync(need('claim-cert')), key: readFileSync(need('claim-key')) },
    template: need('template'),
    parameters: Object.fromEntries(values.parameter.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)])),
  });
  await store.save(result);
  console.log(`identity: ${result.identity}`);
  console.log(`roles: ${result.roles.join(', ')}; certificate ${result.certificateId} valid until ${result.notAfter.toISOString()}`);
  console.log(`deviceConfiguration: ${JSON.stringify(result.deviceConfiguration)}`);
  console.log(`stored in ${values.dir}`);
} catch (err) {
  // A ProvisioningError carries the broker's statusCode, errorCode and errorMessage.
  if (err instanceof ProvisioningError) console.error(`error: rejected: ${err.errorCode} (${err.statusCode}): ${err.errorMessage}`);
  else console.error(`error: ${err.message}`);
  process.exit(1);
}
