/**
 * Certificate renewal from the device (docs/PROVISIONING.md section 3): a new key, its
 * CSR published to `$bastion/certs/<identity>/renew/json` over the device's own
 * connection, the new certificate checked against the new key. Owns: the request and
 * when an automatic renewal is worth making. Must not: store the result or reconnect
 * (device.ts does both, in that order).
 *
 * SECURITY: every renewal makes a new key (a renewal is also a key rotation); the old key
 * stays in use until the new certificate is stored.
 */
import type { MqttClient } from 'mqtt';
import { createCsrWithKey } from '../pki/index.js';
import { checkCertificateForKey, keyAlgorithmOfPem, lifetimeUsed } from './certificate.js';
import type { DeviceIdentity } from './identity-store.js';
import { isValidIdentity, parseRenewAccepted, renewTopic } from './protocol.js';
import { RequestChannel } from './request.js';

/** Renews `current` over `client` (connected as that identity) and returns the new identity. */
export async function renewCertificate(client: MqttClient, current: DeviceIdentity, timeoutMs: number): Promise<DeviceIdentity> {
  const topic = renewTopic(current.identity);
  // A CSR needs a commonName; the broker keeps the identity whatever it says.
  const commonName = isValidIdentity(current.identity) && current.identity.length <= 64 && current.identity.trim() === current.identity ? current.identity : 'bastion-device';
  const { csrPem, keyPem } = await createCsrWithKey({ commonName, keyAlgorithm: keyAlgorithmOfPem(current.keyPem) });
  const channel = new RequestChannel(client);
  try {
    await channel.subscribe([topic], timeoutMs);
    const answer = parseRenewAccepted(await channel.ask(topic, 'renew', { certificateSigningRequest: csrPem }, timeoutMs));
    const facts = checkCertificateForKey(answer.certificatePem, keyPem, 'ERR_DEVICE_BAD_ANSWER', 'renew');
    return {
      ...current,
      certPem: answer.certificatePem,
      keyPem,
      certificateId: answer.certificateId,
      notAfter: answer.notAfter,
      ...(current.caPem === undefined && facts.chainPem !== undefined ? { caPem: facts.chainPem } : {}),
    };
  } finally {
    await channel.closeAndUnsubscribe(timeoutMs);
  }
}

/**
 * Whether an automatic renewal is worth making now: the certificate has used at least
 * `minLifetimeUsed` of its lifetime. Without this, a template whose certificates live
 * shorter than the broker's renewal window would be told "renew" at every connection and
 * renew each time, until the daily quota says Throttled.
 */
export function renewalWorthwhile(certPem: string, keyPem: string, now: Date, minLifetimeUsed: number): boolean {
  try {
    return lifetimeUsed(checkCertificateForKey(certPem, keyPem, 'ERR_DEVICE_STORE', 'renewal'), now) >= minLifetimeUsed;
  } catch {
    return true;
  }
}
