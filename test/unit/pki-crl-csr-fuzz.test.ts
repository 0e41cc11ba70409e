/**
 * CRL and CSR parsers against damaged input: every truncation and single-byte mutations
 * of real messages end in a result or a PkiError with the parser's code, nothing else.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { PkiError, createCrl, createRootCa, parseCrl, parseCsr, verifyCrlSignature, type CaMaterial } from '../../src/pki/index.js';
import { generateKeyPair } from '../../src/pki/keys.js';
import { x509 } from '../../src/pki/x509.js';

function armour(der: Uint8Array, label: string): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64')}\n-----END ${label}-----\n`;
}

function der(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}

/** Every truncation and, at each position, three byte values: each must parse or be refused with `code`. */
function fuzz(real: Buffer, label: string, parse: (pem: string) => unknown, allowed: readonly string[]): number {
  let refused = 0;
  const attempt = (bytes: Buffer): void => {
    try {
      parse(armour(bytes, label));
    } catch (err) {
      assert.ok(err instanceof PkiError && allowed.includes(err.code), `unexpected ${String(err)} for ${bytes.toString('hex').slice(0, 200)}`);
      refused++;
    }
  };
  for (let cut = 1; cut < real.length; cut++) attempt(real.subarray(0, cut));
  for (let pos = 0; pos < real.length; pos++) {
    for (const value of [0x00, 0xff, real[pos]! ^ 0x41]) {
      const mutated = Buffer.from(real);
      mutated[pos] = value;
      attempt(mutated);
    }
  }
  return refused;
}

let ca: CaMaterial;
before(async () => {
  ca = await createRootCa({ commonName: 'Fuzz CRL CA' });
});

describe('damaged CRLs and CSRs', () => {
  it('parseCrl: only ERR_PKI_BAD_CRL; a mutated CRL never verifies', async () => {
    const pem = await createCrl({
      ca,
      crlNumber: 77n,
      nextUpdate: new Date(Date.now() + 3600_000),
      entries: [
        { serialNumber: '4A', revokedAt: new Date(), reason: 'keyCompromise' },
        { serialNumber: '4B', revokedAt: new Date() },
      ],
    });
    const real = der(pem);
    const refused = fuzz(real, 'X509 CRL', parseCrl, ['ERR_PKI_BAD_CRL']);
    assert.ok(refused > real.length, `expected most damaged CRLs refused, ${refused} were`);
    for (let pos = 0; pos < real.length; pos += 3) {
      const mutated = Buffer.from(real);
      mutated[pos] = mutated[pos]! ^ 0x01;
      const verdict = await verifyCrlSignature(armour(mutated, 'X509 CRL'), ca.certPem).catch((err: unknown) => {
        assert.ok(err instanceof PkiError && err.code === 'ERR_PKI_BAD_CRL', String(err));
        return false;
      });
      assert.equal(verdict, false, `byte ${pos} flipped and the CRL still verifies`);
    }
  });

  it('parseCsr: only ERR_PKI_BAD_CSR, weak/unsupported key or invalid SAN codes', async () => {
    const keys = await generateKeyPair('ec-p256');
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=fuzz-device',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'fuzz.example' }])],
    });
    const real = Buffer.from(csr.rawData);
    assert.equal(parseCsr(armour(real, 'CERTIFICATE REQUEST')).commonName, 'fuzz-device');
    const refused = fuzz(real, 'CERTIFICATE REQUEST', parseCsr, ['ERR_PKI_BAD_CSR', 'ERR_PKI_WEAK_KEY', 'ERR_PKI_UNSUPPORTED_KEY', 'ERR_PKI_INVALID_INPUT']);
    // A CSR is signed: every truncation and nearly every mutation must be refused.
    assert.ok(refused >= real.length * 3, `only ${refused} damaged CSRs were refused`);
  });
});
