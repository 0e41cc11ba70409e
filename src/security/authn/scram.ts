/**
 * The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as pure message functions:
 * parse client-first, build server-first, verify client-final and build server-final.
 * Owns: the message syntax and the proof check. Must not: look up users or talk MQTT
 * (scram-method.ts does).
 */
import { timingSafeEqual } from 'node:crypto';
import { hmacSha256, sha256 } from './password-hash.js';
import type { ScramCredentials } from './user-store.js';

export interface ClientFirst {
  /** The GS2 header exactly as sent (`n,,`): echoed back base64-encoded in client-final's `c=`. */
  gs2Header: string;
  bare: string;
  username: string;
  clientNonce: string;
}

/** The exchange after server-first, kept between the two AUTH steps. */
export interface ScramExchange {
  first: ClientFirst;
  serverFirst: string;
  nonce: string;
  credentials: ScramCredentials;
}

const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

function decodeSaslName(value: string): string | null {
  // RFC 5802 §5.1: "," and "=" are sent as =2C and =3D; any other "=" is malformed.
  if (/=(?!2C|3D)/.test(value)) return null;
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

/** Parses `n,,n=user,r=nonce`; null when malformed or asking for channel binding / an authzid. */
export function parseClientFirst(message: string): ClientFirst | null {
  // SECURITY: no channel binding ("p=") and no authorization identity: one identity per login.
  const m = /^([ny]),,(n=([^,]*),r=([^,]*)(?:,.*)?)$/.exec(message);
  if (m === null) return null;
  const username = decodeSaslName(m[3]!);
  const clientNonce = m[4]!;
  if (username === null || username.length === 0 || !PRINTABLE_NONCE.test(clientNonce)) return null;
  return { gs2Header: `${m[1]},,`, bare: m[2]!, username, clientNonce };
}

export function serverFirstMessage(first: ClientFirst, serverNonce: string, credentials: ScramCredentials): { message: string; nonce: string } {
  const nonce = first.clientNonce + serverNonce;
  return { message: `r=${nonce},s=${credentials.salt.toString('base64')},i=${credentials.iterations}`, nonce };
}

/** The outcome of client-final: the server-final message to send, or why it failed. */
export type FinalOutcome = { ok: true; serverFinal: string } | { ok: false; reason: string };

/** Verifies client-final (`c=...,r=...,p=...`) in constant time. */
export function verifyClientFinal(exchange: ScramExchange, message: string): FinalOutcome {
  const m = /^(c=([^,]*),r=([^,]*)(?:,[^p][^,]*)*),p=([A-Za-z0-9+/=]+)$/.exec(message);
  if (m === null) return { ok: false, reason: 'malformed SCRAM client-final message' };
  const withoutProof = m[1]!;
  if (m[2] !== Buffer.from(exchange.first.gs2Header, 'utf8').toString('base64')) return { ok: false, reason: 'SCRAM channel binding mismatch' };
  if (m[3] !== exchange.nonce) return { ok: false, reason: 'SCRAM nonce mismatch' };
  const proof = Buffer.from(m[4]!, 'base64');
  const authMessage = `${exchange.first.bare},${exchange.serverFirst},${withoutProof}`;
  const { storedKey, serverKey } = exchange.credentials;
  const clientSignature = hmacSha256(storedKey, authMessage);
  if (proof.length !== clientSignature.length) return { ok: false, reason: 'bad SCRAM proof' };
  const clientKey = Buffer.alloc(proof.length);
  for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
  if (!timingSafeEqual(sha256(clientKey), storedKey)) return { ok: false, reason: 'bad SCRAM proof' };
  return { ok: true, serverFinal: `v=${hmacSha256(serverKey, authMessage).toString('base64')}` };
}
