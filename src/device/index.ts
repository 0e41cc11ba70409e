/**
 * `bastion-mqtt/device`: the device SDK's public surface. Provision a device (a claim
 * certificate or a one-time token buys a certificate for a key made on the device), keep
 * its identity, and run it: a connection that survives outages (offline queue), renews its
 * certificate when the broker says so, and reconnects with the new one. Check signed
 * firmware updates before installing them (`UpdateVerifier`, docs/OTA.md), and let
 * `OtaAgent` follow OTA jobs, download images by blocks and hand them to the bootloader.
 * Must not: export anything of the broker; this module runs on devices.
 *
 *     import { provision, FileIdentityStore, BastionDevice } from 'bastion-mqtt/device';
 *     const store = new FileIdentityStore('./identity');
 *     if ((await store.load()) === null) await store.save(await provision({ url, ca, template: 'sensor', claim: { cert, key }, parameters: { serialNumber } }));
 *     const device = new BastionDevice({ url, ca, store });
 *     await device.connect();
 *     await device.publish(`devices/${device.identity}/telemetry`, JSON.stringify({ t: 21.5 }));
 */
export { provision, PROVISION_USERNAME, DEFAULT_REQUEST_TIMEOUT_MS } from './provision.js';
export type { ProvisionOptions, ProvisionResult } from './provision.js';
export { BastionDevice } from './device.js';
export type { BastionDeviceOptions, DeviceEvents, DeviceMessage, PublishOptions } from './device.js';
export { FileIdentityStore, MemoryIdentityStore } from './identity-store.js';
export type { DeviceIdentity, IdentityStore } from './identity-store.js';
export { OfflineQueue, DEFAULT_QUEUE_LIMIT } from './offline-queue.js';
export type { OfflineQueueOptions, OverflowPolicy } from './offline-queue.js';
export { DeviceError, ProvisioningError } from './errors.js';
export type { DeviceErrorCode, ProvisioningStep } from './errors.js';
export { parseProvisioningToken, parseTokenList, registerTopic, renewTopic, renewalDueTopic, CREATE_FROM_CSR_TOPIC, RENEW_USER_PROPERTY } from './protocol.js';
export type { DeviceConfiguration } from './protocol.js';
export { UpdateVerifier, FileUpdateStateStore, MemoryUpdateStateStore } from './ota-verify.js';
export type { UpdateState, UpdateStateStore, UpdateVerifierOptions } from './ota-verify.js';
export { verifyUpdate, verifyKeySet, sha256Hex } from '../firmware/index.js';
export type { Manifest, FirmwarePublicKey, SignedKeySet, SignedManifest, RefusalReason, Refusal, VerifyPolicy, ImageInput } from '../firmware/index.js';
export { createCsrWithKey } from '../pki/index.js';
export type { CsrWithKey, KeyAlgorithm } from '../pki/index.js';
export { OtaAgent } from './ota-agent.js';
export type { OtaAgentEvents, OtaAgentOptions, OtaAgentStats, OtaFailureReason, OtaJobInfo } from './ota-agent.js';
export { BlockBitmap, parseBlock, planWindow, checkBlock, BLOCK_HEADER_BYTES } from './ota-blocks.js';
export type { BlockRefusal, BlockWindow, DataBlock } from './ota-blocks.js';
