/**
 * The device SDK's errors. Owns: `DeviceError` (something went wrong on the device's
 * side of the wire: connection, timeout, a malformed answer, the identity store, the
 * offline queue) and `ProvisioningError` (the broker answered `…/rejected`), each with a
 * stable `code`. Must not: carry key material, tokens or certificates in messages.
 */
import { BastionError } from '../core/errors.js';

export type DeviceErrorCode =
  /** Bad options given to the SDK (URL, template name, parameters, token). */
  | 'ERR_DEVICE_INVALID_INPUT'
  /** TCP or TLS failed, the connection closed before CONNACK or while waiting for an answer. */
  | 'ERR_DEVICE_CONNECTION'
  /** The broker refused the CONNECT (`reasonCode` says why). */
  | 'ERR_DEVICE_CONNACK'
  /** The broker refused a SUBSCRIBE (`reasonCode`). */
  | 'ERR_DEVICE_SUBSCRIBE'
  /** The broker refused a PUBLISH in its PUBACK (`reasonCode`), or it could not be sent. */
  | 'ERR_DEVICE_PUBLISH'
  /** No answer, CONNACK or SUBACK in time. */
  | 'ERR_DEVICE_TIMEOUT'
  /** An answer that is not what docs/PROVISIONING.md says (or a certificate not for our key). */
  | 'ERR_DEVICE_BAD_ANSWER'
  /** The broker rejected a provisioning or renewal request (a `ProvisioningError`). */
  | 'ERR_DEVICE_REJECTED'
  /** The identity store holds nothing, or something unusable. */
  | 'ERR_DEVICE_STORE'
  /** The offline queue is full (or the message was dropped to make room). */
  | 'ERR_DEVICE_QUEUE_FULL'
  /** The device was closed before the operation finished. */
  | 'ERR_DEVICE_CLOSED';

export class DeviceError extends BastionError {
  declare readonly code: DeviceErrorCode;
  /** The MQTT reason code, for CONNACK, SUBACK and PUBACK refusals. */
  readonly reasonCode: number | undefined;
  constructor(code: DeviceErrorCode, message: string, reasonCode?: number) {
    super(code, message);
    this.name = 'DeviceError';
    this.reasonCode = reasonCode;
  }
}

/** Which request was rejected. */
export type ProvisioningStep = 'create-from-csr' | 'register' | 'renew';

/** A `…/rejected` answer (docs/PROVISIONING.md "Errors"). */
export class ProvisioningError extends DeviceError {
  readonly step: ProvisioningStep;
  /** 400, 403, 404, 409, 429, 500 or 503. */
  readonly statusCode: number;
  /** `InvalidCsr`, `NotAllowListed`, `Throttled`, … */
  readonly errorCode: string;
  /** The broker's one readable line. */
  readonly errorMessage: string;
  constructor(step: ProvisioningStep, statusCode: number, errorCode: string, errorMessage: string) {
    super('ERR_DEVICE_REJECTED', `${step} rejected by the broker: ${errorCode} (${statusCode}): ${errorMessage}`);
    this.name = 'ProvisioningError';
    this.step = step;
    this.statusCode = statusCode;
    this.errorCode = errorCode;
    this.errorMessage = errorMessage;
  }
}

/** `0x87`. */
export function hex(code: number): string {
  return `0x${code.toString(16).padStart(2, '0')}`;
}
