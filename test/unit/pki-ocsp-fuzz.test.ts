/**
 * OCSP parsers against hostile bytes: random input, every truncation and single-byte
 * mutations of real messages. Each call must either parse or throw PkiError
 * ERR_PKI_BAD_OCSP: never another error, never a hang. Seeded, so a failure replays.
 * Also the option checks of createOcspResponse.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  PkiError,
  buildOcspRequest,
  createOcspResponse,
  createRootCa,
  issueCertificate,
  ocspErrorResponse,
  parseOcspRequest,
  parseOcspResponse,
  type CaMaterial,
  type OcspCertId,
  type OcspStatus,
} from '../../src/pki/index.js';
import { prng } from '../helpers/prng.js';

/** Runs `parse` and returns 'ok' or 'refused'; any other outcome fails the test with the input. */
function outcome(parse: (b: Uint8Array) => unknown, bytes: Uint8Array): 'ok' | 'refused' {
  try {
    parse(bytes);
    return 'ok';
  } catch (err) {
    if (err instanceof PkiError && err.code === 'ERR_PKI_BAD_OCSP') return 'refused';
    assert.fail(`unexpected ${String(err)} for input ${Buffer.from(bytes).toString('hex').slice(0, 400)}`);
  }
}

let ca: CaMaterial;
let request: Buffer;
let response: Buffer;
let certIds: OcspCertId[];
const good = (): OcspStatus => ({ status: 'good' });

before(async () => {
  ca = await createRootCa({ commonName: 'Fuzz CA' });
  const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'fuzz' });
  request = buildOcspRequest({ certPem: leaf.certPem, issuerPem: ca.certPem, nonce: Buffer.alloc(16, 7) });
  certIds = parseOcspRequest(request).certIds;
  response = await createOcspResponse({ ca, certIds, statusOf: () => ({ status: 'revoked', revokedAt: new Date(), reason: 'superseded' }), nonce: Buffer.alloc(16, 7) });
});

describe('OCSP parsers never crash', () => {
  for (const [name, parse] of [
    ['parseOcspRequest', parseOcspRequest],
    ['parseOcspResponse', parseOcspResponse],
  ] as const) {
    it(`${name}: 3000 random inputs (half of them starting like a SEQUENCE)`, () => {
      const rand = prng(0xb4571 + name.length);
      let refused = 0;
      for (let i = 0; i < 3000; i++) {
        const bytes = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256));
        if (i % 2 === 0 && bytes.length > 2) {
          bytes[0] = 0x30;
          bytes[1] = Math.min(bytes.length - 2, bytes[1]! & 0x7f);
        }
        if (outcome(parse, bytes) === 'refused') refused++;
      }
      assert.ok(refused > 2900, `random bytes should nearly all be refused, ${refused} were`);
    });

    it(`${name}: every truncation and single-byte mutation of a real message`, () => {
      const real = name === 'parseOcspRequest' ? request : response;
      assert.equal(outcome(parse, real), 'ok');
      for (let cut = 0; cut < real.length; cut++) assert.equal(outcome(parse, real.subarray(0, cut)), 'refused', `truncated at ${cut}`);
      const rand = prng(42);
      for (let pos = 0; pos < real.length; pos++) {
        for (const value of [0x00, 0xff, 0x80, real[pos]! ^ (1 + Math.floor(rand() * 255))]) {
          const mutated = Buffer.from(real);
          mutated[pos] = value;
          outcome(parse, mutated);
        }
      }
      // Lengths that point far beyond the input, and indefinite lengths.
      for (const bytes of [[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], [0x30, 0x80, 0x00, 0x00], [0x30, 0x85, 1, 1, 1, 1, 1], [0x1f, 0x01, 0x00]]) {
        assert.equal(outcome(parse, Uint8Array.from(bytes)), 'refused');
      }
    });
  }

  it('non-bytes, oversized and deeply nested input are refused', () => {
    assert.throws(() => parseOcspRequest('hello' as unknown as Uint8Array), { code: 'ERR_PKI_BAD_OCSP' });
    assert.throws(() => parseOcspResponse(null as unknown as Uint8Array), { code: 'ERR_PKI_BAD_OCSP' });
    assert.throws(() => parseOcspRequest(new Uint8Array(1024 * 1024)), { code: 'ERR_PKI_BAD_OCSP' });
    let nested: Buffer = Buffer.alloc(0);
    // 2000 well-formed nested SEQUENCEs: the reader descends one level per call, so no stack risk.
    for (let i = 0; i < 2000; i++) nested = Buffer.concat([Buffer.from([0x30, 0x82, (nested.length >> 8) & 0xff, nested.length & 0xff]), nested]);
    assert.equal(outcome(parseOcspRequest, nested), 'refused');
    assert.equal(outcome(parseOcspResponse, nested), 'refused');
  });
});

describe('createOcspResponse and ocspErrorResponse checks', () => {
  it('echoes the nonce and the validity window it was asked for', async () => {
    const now = new Date();
    const der = await createOcspResponse({ ca, certIds, statusOf: good, now, validitySeconds: 600 });
    const [single] = parseOcspResponse(der).responses;
    assert.equal(single?.status, 'good');
    assert.equal(single!.nextUpdate!.getTime() - single!.thisUpdate.getTime(), 600_000);
    assert.equal(single!.thisUpdate.getTime(), Math.floor(now.getTime() / 1000) * 1000);
  });

  it('a CA answered for once is still refused once it has expired', async () => {
    const t0 = new Date();
    const shortCa = await createRootCa({ commonName: 'Short-lived CA', days: 1, now: t0 });
    const leaf = await issueCertificate({ ca: shortCa, profile: 'client', commonName: 'short', now: t0 });
    const ids = parseOcspRequest(buildOcspRequest({ certPem: leaf.certPem, issuerPem: shortCa.certPem })).certIds;
    await createOcspResponse({ ca: shortCa, certIds: ids, statusOf: good, now: new Date(t0.getTime() + 3600_000) });
    await assert.rejects(createOcspResponse({ ca: shortCa, certIds: ids, statusOf: good, now: new Date(t0.getTime() + 2 * 86400_000) }), { code: 'ERR_PKI_INVALID_CA' });
    // A key that does not match the certificate is refused too, cached CA or not.
    const other = await createRootCa({ commonName: 'Other' });
    await assert.rejects(createOcspResponse({ ca: { certPem: shortCa.certPem, keyPem: other.keyPem }, certIds: ids, statusOf: good }), { code: 'ERR_PKI_INVALID_CA' });
  });

  it('refuses bad options with ERR_PKI_INVALID_INPUT', async () => {
    const cases: Array<Parameters<typeof createOcspResponse>[0]> = [
      { ca, certIds, statusOf: good, validitySeconds: 0 },
      { ca, certIds, statusOf: good, validitySeconds: 1.5 },
      { ca, certIds, statusOf: good, nonce: Buffer.alloc(0) },
      { ca, certIds, statusOf: good, nonce: Buffer.alloc(33) },
      { ca, certIds: [{ ...certIds[0]!, hashAlgorithm: 'md5' as 'sha1' }], statusOf: good },
      { ca, certIds: [{ ...certIds[0]!, serialNumber: 'zz' }], statusOf: good },
      { ca, certIds, statusOf: () => ({ status: 'maybe' }) as unknown as OcspStatus },
      { ca, certIds, statusOf: () => ({ status: 'revoked', revokedAt: new Date(Number.NaN) }) },
      { ca, certIds, statusOf: () => ({ status: 'revoked', revokedAt: new Date(), reason: 'bored' as 'superseded' }) },
    ];
    for (const options of cases) await assert.rejects(createOcspResponse(options), { code: 'ERR_PKI_INVALID_INPUT' });
    assert.throws(() => ocspErrorResponse('successful' as 'tryLater'), { code: 'ERR_PKI_INVALID_INPUT' });
    for (const status of ['malformedRequest', 'internalError', 'tryLater', 'unauthorized'] as const) {
      assert.deepEqual(parseOcspResponse(ocspErrorResponse(status)), { responseStatus: status, responses: [] });
    }
  });
});
