/**
 * The block transfer topics (issue 14 item 4, docs/OTA.md "Block transfer"):
 * `$bastion/ota/<identity>/files/<digest>/describe|get` (device → broker) and
 * `…/description|data|rejected` (broker → device). `<identity>` is the device's
 * certificate identity (the rule of the jobs topics), `<digest>` the image's SHA-256 in 64
 * lower-case hex digits. Owns: parsing and naming them. Must not: authorize or answer.
 */
import { isJobIdentity } from '../jobs/topics.js';

export const OTA_TRANSFER_PREFIX = '$bastion/ota/';

export type TransferRequestKind = 'describe' | 'get';
export type TransferAnswerKind = 'description' | 'data' | 'rejected';
export type TransferTopicKind = TransferRequestKind | TransferAnswerKind;

export interface TransferTopic {
  identity: string;
  digest: string;
  kind: TransferTopicKind;
}

const KINDS: ReadonlySet<string> = new Set<TransferTopicKind>(['describe', 'get', 'description', 'data', 'rejected']);
const DIGEST = /^[0-9a-f]{64}$/;

/** Whether `s` is an image digest as the topics spell it (64 lower-case hex digits). */
export function isImageDigest(s: string): boolean {
  return DIGEST.test(s);
}

/** What a (concrete) transfer topic is, or null: not one of the five, a bad identity or digest. */
export function transferTopicOf(topic: string): TransferTopic | null {
  if (!topic.startsWith(OTA_TRANSFER_PREFIX)) return null;
  const parts = topic.slice(OTA_TRANSFER_PREFIX.length).split('/');
  if (parts.length !== 4 || parts[1] !== 'files') return null;
  const [identity, , digest, kind] = parts as [string, string, string, string];
  if (!isJobIdentity(identity) || !isImageDigest(digest) || !KINDS.has(kind)) return null;
  return { identity, digest, kind: kind as TransferTopicKind };
}

/** A request topic (describe or get), or null. */
export function transferRequestOf(topic: string): (TransferTopic & { kind: TransferRequestKind }) | null {
  const t = transferTopicOf(topic);
  return t !== null && (t.kind === 'describe' || t.kind === 'get') ? (t as TransferTopic & { kind: TransferRequestKind }) : null;
}

/**
 * The identity segment of a topic or filter under `$bastion/ota/` (null: not under it, or
 * a wildcard or an impossible identity there), so `$bastion/ota/+/…` and `$bastion/ota/#`
 * name nobody.
 */
export function otaIdentityOf(topicOrFilter: string): string | null {
  if (!topicOrFilter.startsWith(OTA_TRANSFER_PREFIX)) return null;
  const id = topicOrFilter.slice(OTA_TRANSFER_PREFIX.length).split('/')[0]!;
  return isJobIdentity(id) ? id : null;
}

export function transferTopic(identity: string, digest: string, kind: TransferTopicKind): string {
  return `${OTA_TRANSFER_PREFIX}${identity}/files/${digest}/${kind}`;
}
