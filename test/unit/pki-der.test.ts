/**
 * The DER reader and writer under src/pki/der.ts: byte-exact encodings (checked against
 * what OpenSSL writes for the same values) and the malformations the reader must refuse.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DerError,
  childrenOf,
  generalizedTime,
  integer,
  oid,
  parseDer,
  readGeneralizedTime,
  readIntegerHex,
  readOid,
  readUnsigned,
  sequence,
  tlv,
  x509Time,
} from '../../src/pki/der.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('DER writer', () => {
  it('integers are minimal and positive', () => {
    const table: Array<[string | bigint, string]> = [
      [0n, '020100'],
      [127n, '02017f'],
      [128n, '02020080'],
      [256n, '02020100'],
      ['00FF', '020200ff'],
      ['0000000001', '020101'],
      ['7FFF', '02027fff'],
      ['8000', '0203008000'],
      [300n, '0202012c'],
    ];
    for (const [value, expected] of table) assert.equal(hex(integer(value)), expected, String(value));
    assert.throws(() => integer('xyz'), DerError);
    assert.throws(() => integer(-1n), DerError);
  });

  it('OIDs encode as OpenSSL writes them and read back', () => {
    assert.equal(hex(oid('1.2.840.113549.1.1.11')), '06092a864886f70d01010b');
    assert.equal(hex(oid('1.3.6.1.5.5.7.48.1.2')), '06092b0601050507300102');
    assert.equal(hex(oid('2.5.29.20')), '0603551d14');
    for (const text of ['1.2.840.10045.4.3.2', '2.999.3', '1.3.14.3.2.26', '0.9.2342.19200300.100.1.1']) assert.equal(readOid(parseDer(oid(text)), 'oid'), text);
    assert.throws(() => oid('1'), DerError);
  });

  it('long lengths use the minimal long form', () => {
    assert.equal(hex(tlv(0x04, Buffer.alloc(127))).slice(0, 4), '047f');
    assert.equal(hex(tlv(0x04, Buffer.alloc(200))).slice(0, 6), '0481c8');
    assert.equal(hex(tlv(0x04, Buffer.alloc(300))).slice(0, 8), '0482012c');
    assert.equal(parseDer(tlv(0x04, Buffer.alloc(70000))).content.length, 70000);
  });

  it('times: UTCTime until 2049, GeneralizedTime after; whole seconds', () => {
    const d = new Date('2026-11-26T10:00:53.789Z');
    assert.equal(Buffer.from(x509Time(d)).toString('latin1', 2), '261126100053Z');
    assert.equal(x509Time(d)[0], 0x17);
    assert.equal(Buffer.from(x509Time(new Date('2050-01-01T00:00:00Z'))).toString('latin1', 2), '20500101000000Z');
    assert.equal(readGeneralizedTime(parseDer(generalizedTime(d)), 't').toISOString(), '2026-11-26T10:00:53.000Z');
  });
});

describe('DER reader', () => {
  it('reads nested structures one level at a time', () => {
    const der = sequence(integer('01'), sequence(oid('2.5.29.20')));
    const [n, inner] = childrenOf(parseDer(der));
    assert.equal(readUnsigned(n, 'n'), 1n);
    assert.equal(readOid(childrenOf(inner!)[0], 'oid'), '2.5.29.20');
  });

  it('serials come out as Node prints them: upper case, no sign padding', () => {
    assert.equal(readIntegerHex(parseDer(integer('80FF')), 's'), '80FF');
    assert.equal(readIntegerHex(parseDer(integer('0a1b')), 's'), '0A1B');
    assert.equal(readIntegerHex(parseDer(integer(0n)), 's'), '00');
  });

  it('refuses truncation, trailing bytes, indefinite and over-long lengths, long-form tags', () => {
    const bad = ['30', '3004020101', '300302010100', '308002010100 00', '3085010000000000', '1f0100', '0201', '300102'];
    for (const h of bad) assert.throws(() => childrenOf(parseDer(Buffer.from(h.replace(/ /g, ''), 'hex'))), DerError, h);
    assert.throws(() => childrenOf(parseDer(integer(1n))), DerError); // primitive has no children
    assert.throws(() => readUnsigned(parseDer(Buffer.from('0201ff', 'hex')), 'neg'), DerError);
    assert.throws(() => readUnsigned(parseDer(Buffer.from('0200', 'hex')), 'empty'), DerError);
    assert.throws(() => readOid(parseDer(Buffer.from('06022a86', 'hex')), 'truncated oid'), DerError);
    assert.throws(() => readGeneralizedTime(parseDer(Buffer.from('1803313233', 'hex')), 'time'), DerError);
  });
});
