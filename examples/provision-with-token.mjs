#!/usr/bin/env node
/**
 * Provision a device with a one-time token (bastion-mqtt/device).
 *
 * A one-time token (`bastion provision token create --template sensor`, printed once as
 * `bpt_…`) lets exactly one device provision. The device connects over server-authenticated
 * TLS (it verifies the broker with --ca; the listener must have `clientCerts: optional`),
 * with user name `$provision` and the token as password, has the broker certify a key it
 * generates itself, registers against the template, and stores its identity in --dir.
 *
 *   node examples/provision-with-token.mjs \
 *     --url mqtts://127.0.0.1:8883 --ca bastion-data/pki/root.crt \
 *     --token-file token.txt --template sensor --parameter serialNumber=ABC123 \
 *     --dir ./device-identity
 *
 * The token can also be given as --token bpt_… (it then shows in `ps`: prefer the file or
 * the environment). Environment: BASTION_URL, BASTION_CA, BASTION_TOKEN, BASTION_TEMPLATE,
 * DEVICE_DIR, DEVICE_PARAMETERS (name=value,name=value). Prints `identity: <identity>` and
 * exits 0, or one error line and 1.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FileIdentityStore, ProvisioningError, parseProvisioningToken, provision } from 'bastion-mqtt/device';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.BASTION_URL },
    ca: { type: 'string', default: process.env.BASTION_CA },
    token: { type: 'string', default: process.env.BASTION_TOKEN },
    'token-file': { type: 'string' },
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
  const tokenText = values['token-file'] !== undefined ? readFileSync(values['token-file'], 'utf8') : need('token');
  const result = await provision({
    url: need('url'),
    ca: readFileSync(need('ca')),
    token: parseProvisioningToken(tokenText),
    template: need('template'),
    parameters: Object.fromEntries(values.parameter.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)])),
  });
  await store.save(result);
  console.log(`identity: ${result.identity}`);
  console.log(`roles: ${result.roles.join(', ')}; certificate ${result.certificateId} valid until ${result.notAfter.toISOString()}`);
  console.log(`stored in ${values.dir}`);
} catch (err) {
  if (err instanceof ProvisioningError) console.error(`error: rejected: ${err.errorCode} (${err.statusCode}): ${err.errorMessage}`);
  else console.error(`error: ${err.message}`);
  process.exit(1);
}
