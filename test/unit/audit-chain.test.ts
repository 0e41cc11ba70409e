/**
 * The audit chain in memory: record hashing, checkpoint signatures, signer chains, the
 * verifier against each kind of tampering, and the limit-hit / TLS-failure aggregation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createIntermediateCa, createRootCa, issueCertificate } from '../../src/pki/index.js';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { AuditAggregator } from '../../src/security/audit/aggregate.js';
import { chainsToAnchor, loadAuditSigner, signCheckpoint, verifyCheckpointSignature, type AuditCheckpoint, type AuditSigner } from '../../src/security/audit/checkpoint.js';
import { GENESIS_HASH, canonicalJson, chainRecord, hashRecord, hashRecordJson, type AuditRecord } from '../../src/security/audit/record.js';
import { verifyAuditLog, type StoredAuditRecord } from '../../src/security/audit/verify.js';
import { X509Certificate } from 'node:crypto';

const root = await createRootCa({ commonName: 'Audit Test Root', pathLength: 1 });
const intermediate = await createIntermediateCa({ root, commonName: 'Audit Test Intermediate' });
const issued = await issueCertificate({ ca: intermediate, profile: 'client', commonName: 'bastion-audit-signer' });
/** Leaf + intermediate, as the PKI service writes signer.crt. */
const signer: AuditSigner = loadAuditSigner(issued.keyPem, issued.certPem + intermediate.certPem);
const otherRoot = await createRootCa({ commonName: 'Someone Else' });
const selfSigner = loadAuditSigner(otherRoot.keyPem, otherRoot.certPem);

function event(i: number): SecurityEvent {
  return { type: 'auth.failure', listener: 'plain', remoteAddress: `10.0.0.${i % 250}`, clientId: `dev-${i}`, provider: 'password', reasonCode: 0x86, reason: 'bad user name or password' };
}

function chain(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let i = 1; i <= n; i++) out.push(chainRecord(out[out.length - 1] ?? null, 1_700_000_000_000 + i, event(i)));
  return out;
}

function stored(records: readonly AuditRecord[]): StoredAuditRecord[] {
  return records.map((r) => ({ seq: r.seq, ts: r.ts, eventJson: canonicalJson(r.event), prevHash: r.prevHash, hash: r.hash }));
}

/** Re-hashes every record from index `from` on, as an attacker without the key can. */
function rechain(rows: StoredAuditRecord[], from: number): void {
  for (let i = from; i < rows.length; i++) {
    const r = rows[i]!;
    r.prevHash = i === 0 ? GENESIS_HASH : rows[i - 1]!.hash;
    r.hash = hashRecordJson(r.seq, r.ts, r.prevHash, r.eventJson);
  }
}

function checkpointsEvery(rows: readonly StoredAuditRecord[], every: number, by: AuditSigner = signer): AuditCheckpoint[] {
  return rows.filter((r) => r.seq % every === 0).map((r) => signCheckpoint(by, r.seq, r.hash, 1_800_000_000_000 + r.seq));
}

const signers = new Map([
  [signer.fingerprint, signer.certPem],
  [selfSigner.fingerprint, selfSigner.certPem],
]);

function check(rows: StoredAuditRecord[], checkpoints: AuditCheckpoint[], extra: { anchor?: boolean } = {}) {
  return verifyAuditLog({
    records: rows,
    checkpoints,
    signers,
    trustAnchorPem: extra.anchor === false ? undefined : root.certPem,
    recordWithHash: (h) => rows.find((r) => r.hash === h),
  });
}

test('a record hash covers seq, time, link and the event in canonical form (key order does not matter)', () => {
  const [a] = chain(1);
  assert.equal(a!.prevHash, GENESIS_HASH);
  assert.equal(hashRecord(a!), a!.hash);
  assert.equal(hashRecordJson(a!.seq, a!.ts, a!.prevHash, canonicalJson(a!.event)), a!.hash);
  const reordered = JSON.parse(JSON.stringify(a!.event, Object.keys(a!.event).reverse())) as SecurityEvent;
  assert.equal(canonicalJson(reordered), canonicalJson(a!.event));
  for (const changed of [{ ...a!, seq: 2 }, { ...a!, ts: a!.ts + 1 }, { ...a!, prevHash: 'f'.repeat(64) }, { ...a!, event: { ...a!.event, clientId: 'x' } as SecurityEvent }]) {
    assert.notEqual(hashRecord(changed), a!.hash);
  }
  // The canonical form, pinned: sorted keys (UTF-16 order), undefined members dropped, undefined array items null.
  assert.equal(canonicalJson({ b: 1, a: [1, undefined, { z: 2, y: 'é' }], c: undefined, é: 2, E: 3 }), '{"E":3,"a":[1,null,{"y":"é","z":2}],"b":1,"é":2}');
  const [, b] = chain(2);
  assert.equal(b!.prevHash, a!.hash);
  assert.equal(b!.seq, 2);
});

test('a checkpoint signature covers seq, hash and time, and only the signer key makes one', () => {
  const cert = new X509Certificate(issued.certPem);
  const cp = signCheckpoint(signer, 10, 'a'.repeat(64), 123);
  assert.equal(cp.signerFingerprint, cert.fingerprint256);
  assert.equal(verifyCheckpointSignature(cp, cert), true);
  for (const bad of [{ ...cp, seq: 11 }, { ...cp, hash: 'b'.repeat(64) }, { ...cp, ts: 124 }, { ...cp, signature: 'AAAA' }, { ...cp, signature: '!!not base64' }]) {
    assert.equal(verifyCheckpointSignature(bad, cert), false);
  }
  const forged = signCheckpoint(selfSigner, 10, 'a'.repeat(64), 123);
  assert.equal(verifyCheckpointSignature({ ...forged, signerFingerprint: cp.signerFingerprint }, cert), false);
  assert.throws(() => loadAuditSigner(otherRoot.keyPem, issued.certPem), /does not match/);
});

test('the PKI-issued signer chains to its root; a self-signed one and a foreign root do not', () => {
  assert.equal(chainsToAnchor(signer.certPem, root.certPem), true);
  assert.equal(chainsToAnchor(issued.certPem, root.certPem), false, 'leaf without its intermediate');
  assert.equal(chainsToAnchor(signer.certPem, otherRoot.certPem), false);
  assert.equal(chainsToAnchor(selfSigner.certPem, root.certPem), false);
  assert.equal(chainsToAnchor(root.certPem, root.certPem), false, 'the root itself is no signer');
});

test('an intact log verifies; the unsigned tail is a warning, not a failure', () => {
  const rows = stored(chain(105));
  const r = check(rows, checkpointsEvery(rows, 50));
  assert.equal(r.ok, true, r.problem?.message);
  assert.equal(r.records, 105);
  assert.equal(r.checkpoints, 2);
  assert.equal(r.lastSignedSeq, 100);
  assert.deepEqual(r.signersUsed, [signer.fingerprint]);
  assert.match(r.warnings.join('\n'), /records after seq 100 are not covered by a checkpoint \(records 101 to 105/);
  assert.deepEqual(r.unsigned, { from: 101, to: 105, oldestTs: rows[100]!.ts });
  // --strict: an unsigned tail fails (checkpoints removed so the tail could be rewritten).
  const strict = verifyAuditLog({ records: rows, checkpoints: checkpointsEvery(rows, 50), signers, trustAnchorPem: root.certPem, strict: true });
  assert.equal(strict.problem?.kind, 'unsigned');
  assert.match(strict.problem?.message ?? '', /^records after seq 100 are not covered by a checkpoint \(records 101 to 105 are hash-linked, not signed; the oldest from 20\d\d-.*\): checkpoints were removed, or the broker did not stop cleanly$/);
  const signedToEnd = verifyAuditLog({ records: rows.slice(0, 100), checkpoints: checkpointsEvery(rows, 50), signers, trustAnchorPem: root.certPem, strict: true });
  assert.equal(signedToEnd.ok, true);
  assert.equal(signedToEnd.unsigned, null);
  const empty = check([], []);
  assert.equal(empty.ok, true);
  assert.equal(empty.records, 0);
});

test('an edited record is named: "record 42 was altered (hash mismatch)"', () => {
  const rows = stored(chain(100));
  rows[41]!.eventJson = rows[41]!.eventJson.replace('dev-42', 'dev-evil');
  const r = check(rows, checkpointsEvery(rows, 50));
  assert.equal(r.ok, false);
  assert.equal(r.problem?.message, 'record 42 was altered (hash mismatch)');
  const garbage = stored(chain(5));
  garbage[2]!.eventJson = '{not json';
  assert.equal(check(garbage, []).problem?.message, 'record 3 was altered (hash mismatch)');
});

test('a deleted record is named, one or several', () => {
  const rows = stored(chain(100));
  const one = rows.filter((r) => r.seq !== 42);
  assert.equal(check(one, checkpointsEvery(rows, 50)).problem?.message, 'record 42 is missing (deleted)');
  const three = rows.filter((r) => r.seq < 42 || r.seq > 44);
  assert.equal(check(three, checkpointsEvery(rows, 50)).problem?.message, 'records 42 to 44 are missing (deleted)');
  const first = rows.slice(1);
  assert.equal(check(first, []).problem?.message, 'record 1 is missing (deleted; no signed pruning checkpoint covers it)');
});

test('two swapped records are named as out of order, adjacent or not', () => {
  const rows = stored(chain(100));
  const swap = (a: number, b: number): StoredAuditRecord[] => {
    const copy = rows.map((r) => ({ ...r }));
    copy[a - 1]!.seq = b;
    copy[b - 1]!.seq = a;
    return copy.sort((x, y) => x.seq - y.seq);
  };
  assert.equal(check(swap(42, 43), checkpointsEvery(rows, 50)).problem?.message, 'records 42 and 43 are out of order');
  assert.equal(check(swap(42, 47), checkpointsEvery(rows, 50)).problem?.message, 'records 42 and 47 are out of order');
});

test('a record removed and the next re-hashed into its place is named as missing', () => {
  const rows = stored(chain(60));
  const copy = rows.filter((r) => r.seq !== 42).map((r) => ({ ...r }));
  const moved = copy[41]!; // was 43
  moved.seq = 42;
  moved.hash = hashRecordJson(moved.seq, moved.ts, moved.prevHash, moved.eventJson);
  assert.match(check(copy, []).problem?.message ?? '', /^record 42 is missing \(deleted/);
});

test('an edit with the whole chain re-hashed after it is caught by the checkpoint (no key)', () => {
  const rows = stored(chain(100));
  const cps = checkpointsEvery(rows, 10);
  const copy = rows.map((r) => ({ ...r }));
  copy[41]!.eventJson = copy[41]!.eventJson.replace('dev-42', 'dev-evil');
  rechain(copy, 41);
  const r = check(copy, cps);
  assert.equal(r.ok, false);
  assert.equal(r.problem?.kind, 'rewritten');
  assert.equal(r.problem?.seq, 41);
  assert.match(r.problem?.message ?? '', /^records 41 to 50 were rewritten: .*checkpoint at seq 50 does not match; checkpoint at seq 40 does/);
  // With a checkpoint per record the record itself is named.
  const each = checkpointsEvery(rows, 1);
  assert.equal(check(copy, each).problem?.message, 'record 42 was altered and the chain re-hashed (checkpoint at seq 42 does not match)');
});

test('deleting a record and renumbering and re-hashing everything after it is caught', () => {
  const rows = stored(chain(100));
  const cps = checkpointsEvery(rows, 25);
  const copy = rows.filter((r) => r.seq !== 60).map((r) => ({ ...r }));
  copy.forEach((r, i) => (r.seq = i + 1));
  rechain(copy, 59);
  const r = check(copy, cps);
  assert.equal(r.problem?.kind, 'rewritten');
  assert.match(r.problem?.message ?? '', /^records 51 to 75 were rewritten/);
});

test('cutting the tail after a checkpoint is caught; an unsigned tail cut is not (documented limit)', () => {
  const rows = stored(chain(100));
  const cps = checkpointsEvery(rows, 50);
  const r = check(rows.slice(0, 97), cps);
  assert.equal(r.problem?.kind, 'truncated');
  assert.equal(r.problem?.message, 'records 98 to 100 are missing (the tail was cut: checkpoint at seq 100 names a record that is not there)');
  const onlyLast = check(rows.slice(0, 99), cps);
  assert.match(onlyLast.problem?.message ?? '', /^record 100 is missing \(the tail was cut/);
  const unsigned = stored(chain(105));
  const cut = check(unsigned.slice(0, 103), checkpointsEvery(unsigned, 50));
  assert.equal(cut.ok, true);
});

test('checkpoint problems: bad signature, unknown signer, a signer that does not chain to the root', () => {
  const rows = stored(chain(100));
  const cps = checkpointsEvery(rows, 50);
  const badSig = cps.map((c) => (c.seq === 50 ? { ...c, ts: c.ts + 1 } : c));
  assert.equal(check(rows, badSig).problem?.message, 'checkpoint at seq 50: bad signature');
  const unknown = cps.map((c) => ({ ...c, signerFingerprint: 'AA:BB' }));
  assert.equal(check(rows, unknown).problem?.message, 'checkpoint at seq 50: unknown signer AA:BB');
  const selfSigned = checkpointsEvery(rows, 50, selfSigner);
  const untrusted = check(rows, selfSigned);
  assert.equal(untrusted.problem?.kind, 'untrusted-signer');
  assert.equal(untrusted.problem?.message, `checkpoint at seq 50: signer ${selfSigner.fingerprint} does not chain to the PKI root`);
  // Without a built-in PKI the self-signed signer is accepted, with a warning.
  const noPki = check(rows, selfSigned, { anchor: false });
  assert.equal(noPki.ok, true);
  assert.match(noPki.warnings.join('\n'), /self-signed/);
  const garbled = verifyAuditLog({ records: rows, checkpoints: cps, signers: new Map([[signer.fingerprint, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----']]) });
  assert.equal(garbled.problem?.message, `checkpoint at seq 50: the stored certificate of signer ${signer.fingerprint} cannot be read`);
  // A forged checkpoint past the end (to fake a truncation) is a bad signature, not a cut.
  const forged = [...cps, { ...cps[1]!, seq: 200 }];
  assert.equal(check(rows, forged).problem?.message, 'checkpoint at seq 200: bad signature');
});

test('aggregation: limit hits, TLS failures and refusals at accept are summed per key, successful handshakes dropped, the rest recorded', () => {
  const agg = new AuditAggregator(4);
  const hit = (clientId: string, count = 1): SecurityEvent => ({ type: 'limit.hit', limit: 'publish-rate', listener: 'plain', clientId, remoteAddress: '127.0.0.1', action: 'dropped', count });
  assert.equal(agg.offer(hit('a'), 1), 'absorbed');
  assert.equal(agg.offer(hit('a', 4), 2), 'absorbed');
  assert.equal(agg.offer(hit('b'), 3), 'absorbed');
  assert.equal(agg.offer({ type: 'tls.handshake', listener: 'mqtts', remoteAddress: '10.0.0.1', ok: true, resumed: false }, 4), 'ignored');
  assert.equal(agg.offer({ type: 'tls.handshake', listener: 'mqtts', remoteAddress: '10.0.0.1', ok: false, resumed: false, reason: 'no cert' }, 5), 'absorbed');
  assert.equal(agg.offer({ type: 'tls.handshake', listener: 'mqtts', remoteAddress: '10.0.0.1', ok: false, resumed: false, reason: 'no cert' }, 6), 'absorbed');
  assert.equal(agg.offer(event(1), 7), 'record');
  const banned: SecurityEvent = { type: 'connection.refused', stage: 'accept', listener: 'mqtts', remoteAddress: '10.0.0.9', reason: 'address banned' };
  assert.equal(agg.offer(banned, 8), 'absorbed');
  assert.equal(agg.offer({ ...banned }, 9), 'absorbed');
  assert.equal(agg.offer({ ...banned, stage: 'connect', clientId: 'x' }, 10), 'record', 'refusals after accept are recorded one by one');
  const out = agg.drain();
  assert.deepEqual(
    out.map((o) => [o.ts, o.event.type, 'count' in o.event ? o.event.count : undefined]),
    [
      [1, 'limit.hit', 5],
      [3, 'limit.hit', 1],
      [5, 'tls.handshake', 2],
      [8, 'connection.refused', 2],
    ],
  );
  assert.equal(agg.size, 0);
  // Past the key cap, new sources are summed into one record without their identity.
  for (const c of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']) agg.offer(hit(c, 2), 10);
  const capped = agg.drain();
  assert.equal(capped.length, 5);
  const overflow = capped[4]!.event;
  assert.equal(overflow.type === 'limit.hit' && overflow.count, 4);
  assert.equal(overflow.type === 'limit.hit' && overflow.clientId, undefined);
});

test('aggregation: authorization denials are summed per client, action, topic and reason; a denied will is recorded alone', () => {
  const agg = new AuditAggregator(3);
  const denied = (action: 'publish' | 'subscribe' | 'receive' | 'will', topic = 'plant/1/valve', clientId = 'c1'): SecurityEvent => ({
    type: 'authz.denied',
    clientId,
    principal: clientId,
    remoteAddress: '127.0.0.1',
    action,
    topic,
    reason: 'no rule allows',
  });
  const first = denied('publish') as Extract<SecurityEvent, { type: 'authz.denied' }>;
  for (let i = 0; i < 50; i++) assert.equal(agg.offer(i === 0 ? first : denied('publish'), 10 + i), 'absorbed');
  assert.equal(first.count, undefined, "the emitter's event is not changed");
  assert.equal(agg.offer(denied('receive', 'plant/#'), 70), 'absorbed');
  assert.equal(agg.offer(denied('receive', 'plant/#'), 71), 'absorbed');
  assert.equal(agg.offer(denied('will'), 72), 'record', 'a will refuses its connection: one record, in order');
  assert.deepEqual(
    agg.drain().map((o) => [o.ts, o.event.type === 'authz.denied' ? [o.event.action, o.event.topic, o.event.count] : null]),
    [
      [10, ['publish', 'plant/1/valve', 50]],
      [70, ['receive', 'plant/#', 2]],
    ],
  );
  // Past the key cap, a spray of clients and topics is one record per action, without identities.
  for (let i = 0; i < 6; i++) agg.offer(denied('publish', `t/${i}`, `c${i}`), 80);
  const capped = agg.drain();
  assert.equal(capped.length, 4);
  const overflow = capped[3]!.event;
  assert.ok(overflow.type === 'authz.denied');
  assert.deepEqual([overflow.clientId, overflow.topic, overflow.action, overflow.count], ['*', '*', 'publish', 3]);
});
