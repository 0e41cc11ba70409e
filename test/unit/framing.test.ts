import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader, type FrameTarget } from '../../src/protocol/framing.js';

/** A frame target that copies each frame out, and stops reading while `stopped()` says so. */
function into(out: Buffer[], stopped: () => boolean = () => false): FrameTarget {
  return { frame: (b, start, end) => out.push(Buffer.from(b.subarray(start, end))), readingStopped: stopped };
}
import { ProtocolViolation } from '../../src/core/errors.js';
import { ReasonCode } from '../../src/protocol/reason-codes.js';

function collect(reader: FrameReader, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) reader.push(c, into(out));
  return out;
}

test('frames split across and within chunks come out whole and in order', () => {
  const ping = Buffer.from([0xc0, 0x00]);
  const pub = Buffer.from([0x30, 0x05, 0x00, 0x01, 0x74, 0x68, 0x69]);
  const stream = Buffer.concat([ping, pub, ping]);
  for (let cut = 1; cut < stream.length; cut++) {
    const frames = collect(new FrameReader(1024), [stream.subarray(0, cut), stream.subarray(cut)]);
    assert.deepEqual(frames, [ping, pub, ping], `cut at ${cut}`);
  }
  const byteByByte = collect(new FrameReader(1024), [...stream].map((b) => Buffer.from([b])));
  assert.deepEqual(byteByByte, [ping, pub, ping]);
});

test('an oversized packet is refused from its fixed header alone', () => {
  const reader = new FrameReader(100);
  // Header announcing 10 MB, no body at all.
  const header = Buffer.from([0x30, 0x80, 0xad, 0xe2, 0x04]);
  assert.throws(
    () => reader.push(header, { frame: () => assert.fail('no frame expected'), readingStopped: () => false }),
    (e: unknown) => e instanceof ProtocolViolation && e.reasonCode === ReasonCode.PacketTooLarge,
  );
  assert.equal(reader.bufferedBytes, 0);
});

test('a remaining length longer than four bytes is malformed', () => {
  const reader = new FrameReader(1 << 28);
  assert.throws(
    () => reader.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), into([])),
    (e: unknown) => e instanceof ProtocolViolation && e.reasonCode === ReasonCode.MalformedPacket,
  );
});

test('a stop request between frames keeps the rest for later, in order', () => {
  const reader = new FrameReader(1024);
  const ping = Buffer.from([0xc0, 0x00]);
  const stream = Buffer.concat([ping, ping, ping]);
  const out: Buffer[] = [];
  let stopped = true;
  reader.push(stream, into(out, () => stopped));
  assert.equal(out.length, 1);
  assert.equal(reader.bufferedBytes, 4);
  stopped = false;
  reader.push(Buffer.alloc(0), into(out, () => stopped));
  assert.equal(out.length, 3);
  assert.equal(reader.bufferedBytes, 0);
});
