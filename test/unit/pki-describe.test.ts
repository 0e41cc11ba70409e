/**
 * describeCertificate and splitPemChain: the fields for each key algorithm and SAN type,
 * PEM bundles with other blocks and CRLF line ends, and clear refusals for bad input.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { createRootCa, describeCertificate, issueCertificate, splitPemChain, type CaMaterial } from '../../src/pki/index.js';

let ca: CaMaterial;
before(async () => {
  ca = await createRootCa({ commonName: 'Describe CA' });
});

describe('describeCertificate', () => {
  it('reports every SAN type, dates, EKU and key algorithm', async () => {
    const leaf = await issueCertificate({
      ca,
      profile: 'server',
      commonName: 'broker.example',
      keyAlgorithm: 'rsa-2048',
      days: 10,
      sans: [
        { type: 'dns', value: 'broker.example' },
        { type: 'ip', value: '192.0.2.7' },
        { type: 'uri', value: 'spiffe://bastion/broker' },
        { type: 'email', value: 'ops@example.org' },
      ],
    });
    const info = describeCertificate(leaf.certPem);
    assert.deepEqual(info.sans, { dns: ['broker.example'], ip: ['192.0.2.7'], uri: ['spiffe://bastion/broker'], email: ['ops@example.org'] });
    assert.equal(info.keyAlgorithm, 'rsa-2048');
    assert.deepEqual(info.extendedKeyUsages, ['serverAuth']);
    assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 10 * 86400_000 + 60_000);
    const node = new X509Certificate(leaf.certPem);
    assert.equal(info.serialNumber, node.serialNumber);
    assert.equal(info.fingerprint256, node.fingerprint256);
    assert.equal(info.issuer, 'CN=Describe CA');
    assert.equal(describeCertificate(ca.certPem).keyAlgorithm, 'ec-p256');
    assert.equal(describeCertificate(ca.certPem).isCa, true);
  });

  it('a client without SANs and OU has empty lists', async () => {
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'bare' });
    const info = describeCertificate(leaf.certPem);
    assert.deepEqual(info.sans, { dns: [], ip: [], uri: [], email: [] });
    assert.deepEqual(info.organizationalUnits, []);
    assert.equal(info.subject, 'CN=bare');
  });

  it('refuses input that holds no certificate', () => {
    for (const bad of ['', 'hello', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 42 as unknown as string]) {
      assert.throws(() => describeCertificate(bad), { code: 'ERR_PKI_INVALID_INPUT' });
    }
  });
});

describe('splitPemChain', () => {
  it('returns the certificates of a bundle in order, skipping other blocks, normalising line ends', async () => {
    const leaf = await issueCertificate({ ca, profile: 'client', commonName: 'chain-leaf' });
    const bundle = `junk before\r\n${leaf.certPem.replace(/\n/g, '\r\n')}${leaf.keyPem}\n${ca.certPem}`;
    const certs = splitPemChain(bundle);
    assert.deepEqual(certs, [leaf.certPem, ca.certPem]);
    assert.deepEqual(splitPemChain(leaf.keyPem), []);
    assert.deepEqual(splitPemChain(''), []);
  });

  it('refuses a certificate block that is not base64', () => {
    assert.throws(() => splitPemChain('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'), { code: 'ERR_PKI_INVALID_INPUT' });
  });
});
