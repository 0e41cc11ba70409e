/**
 * UTF-8 rules for MQTT strings [MQTT-1.5.4-1] [MQTT-1.5.4-2]: well-formed, no U+0000.
 */
import { isUtf8 } from 'node:buffer';

export function isValidMqttUtf8(bytes: Uint8Array): boolean {
  if (!isUtf8(bytes)) return false;
  return bytes.indexOf(0) === -1;
}

/**
 * mqtt-packet decodes strings with replacement characters; a decoded string that holds
 * U+FFFD is checked against the raw frame: if its UTF-8 encoding is not in the frame,
 * the wire carried ill-formed bytes that were replaced.
 */
export function decodedStringIsFaithful(value: string, frame: Buffer): boolean {
  if (value.includes('\u0000')) return false;
  if (!value.includes('\uFFFD')) return true;
  return frame.includes(Buffer.from(value, 'utf8'));
}

/** Payload Format Indicator 1 promises UTF-8 [MQTT-3.3.2-4]. */
export function isUtf8Payload(bytes: Uint8Array): boolean {
  return isUtf8(bytes);
}
