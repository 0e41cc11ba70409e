/**
 * Fleet provisioning from the device: a new key and CSR made on the device, a
 * certificate for it from the broker (create-from-csr), then registration against a
 * template (docs/PROVISIONING.md steps 1 and 2). Owns: the options, the order of the
 * steps and what is returned. Must not: store anything (the caller hands the result to
 * an IdentityStore) or keep the connection.
 *
 * SECURITY: the private key never leaves the device (only its CSR does); the broker is
 * always verified against `ca`; the certificate the broker returns must certify our key.
 */
import { randomBytes } from 'node:crypto';
import { createCsrWithKey, type KeyAlgorithm } from '../pki/index.js';
import { checkCertificateForKey } from './certificate.js';
import { connectOnce, endClient, type Credentials } from './connection.js';
import { DeviceError } from './errors.js';
import { CREATE_FROM_CSR_TOPIC, assertTemplateName, parseCsrAccepted, parseProvisioningToken, parseRegisterAccepted, registerTopic, type DeviceConfiguration } from './protocol.js';
import { RequestChannel } from './request.js';

/** The user name a one-time token connects with. */
export const PROVISION_USERNAME = '$provision';

/** Default deadline of each request (and of the CONNACK and SUBACK). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

export interface ProvisionOptions {
  /** `mqtts://host:port` of a listener that accepts claims (and tokens: `clientCerts: optional`). */
  url: string;
  /** PEM of the CA the broker's certificate must chain to. */
  ca: string | Buffer;
  /** The template to register against. */
  template: string;
  /** A claim certificate and its key (mutual TLS). Exactly one of `claim` and `token`. */
  claim?: { cert: string | Buffer; key: string | Buffer };
  /** A one-time token `bpt_…` (server-authenticated TLS, user name `$provision`). */
  token?: string;
  /** The template's parameters, e.g. `{ serialNumber: 'ABC123' }`. */
  parameters?: Record<string, string>;
  /** The device key's algorithm: `ec-p256` (default), `ec-p384`, `rsa-2048`, `rsa-3072`. */
  keyAlgorithm?: KeyAlgorithm;
  /** Deadline for each step, default 10 s. */
  timeoutMs?: number;
  /** TLS server name to check when it differs from the URL's host. */
  servername?: string;
  /** Client id of the provisioning connection (default `provision-<random>`). */
  clientId?: string;
}

/** A provisioned device: what an IdentityStore keeps. */
export interface ProvisionResult {
  identity: string;
  certificateId: string;
  /** The device certificate, leaf then chain (what TLS sends). */
  certPem: string;
  /** The device's new private key, PKCS#8 PEM. SECURITY: store it 0600, never log it. */
  keyPem: string;
  /** The issuing CA chain the broker sent after the leaf, when it sent one. */
  caPem?: string;
  roles: string[];
  notAfter: Date;
  deviceConfiguration: DeviceConfiguration;
}

function credentialsOf(opts: ProvisionOptions): Credentials {
  if ((opts.claim === undefined) === (opts.token === undefined)) {
    throw new DeviceError('ERR_DEVICE_INVALID_INPUT', 'provision needs exactly one of claim (certificate and key) and token');
  }
  if (opts.claim !== undefined) return { kind: 'certificate', certPem: opts.claim.cert, keyPem: opts.claim.key };
  return { kind: 'password', username: PROVISION_USERNAME, password: parseProvisioningToken(opts.token ?? '') };
}

function checkParameters(parameters: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parameters ?? {})) {
    if (typeof value !== 'string') throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `parameter ${name} must be a string`);
    out[name] = value;
  }
  return out;
}

/**
 * Provisions this device: connects with the claim or token, asks for a certificate for a
 * key generated here, registers it against `template` with `parameters`, and returns the
 * identity, certificate and key. A rejection throws a ProvisioningError (statusCode,
 * errorCode, errorMessage); anything else a DeviceError.
 */
export async function provision(opts: ProvisionOptions): Promise<ProvisionResult> {
  assertTemplateName(opts.template);
  const credentials = credentialsOf(opts);
  const parameters = checkParameters(opts.parameters);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  // The key is made before connecting: a slow RSA key must not hold a connection open.
  // The CSR's subject is ignored by the broker (the template decides the identity).
  const { csrPem, keyPem } = await createCsrWithKey({ commonName: 'bastion-device', ...(opts.keyAlgorithm !== undefined ? { keyAlgorithm: opts.keyAlgorithm } : {}) });
  const { client } = await connectOnce({
    url: opts.url,
    ca: opts.ca,
    clientId: opts.clientId ?? `provision-${randomBytes(8).toString('hex')}`,
    credentials,
    connectTimeoutMs: timeoutMs,
    ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
  });
  const channel = new RequestChannel(client);
  try {
    const register = registerTopic(opts.template);
    // One SUBSCRIBE for both steps' answer topics, before the first request.
    await channel.subscribe([CREATE_FROM_CSR_TOPIC, register], timeoutMs);
    const step1 = parseCsrAccepted(await channel.ask(CREATE_FROM_CSR_TOPIC, 'create-from-csr', { certificateSigningRequest: csrPem }, timeoutMs));
    checkCertificateForKey(step1.certificatePem, keyPem, 'ERR_DEVICE_BAD_ANSWER', 'create-from-csr');
    const step2 = parseRegisterAccepted(await channel.ask(register, 'register', { certificateOwnershipToken: step1.certificateOwnershipToken, parameters }, timeoutMs));
    const facts = checkCertificateForKey(step2.certificatePem, keyPem, 'ERR_DEVICE_BAD_ANSWER', 'register');
    return {
      identity: step2.identity,
      certificateId: step2.certificateId,
      certPem: step2.certificatePem,
      keyPem,
      ...(facts.chainPem !== undefined ? { caPem: facts.chainPem } : {}),
      roles: step2.roles,
      notAfter: step2.notAfter,
      deviceConfiguration: step2.deviceConfiguration,
    };
  } finally {
    channel.close();
    await endClient(client);
  }
}
