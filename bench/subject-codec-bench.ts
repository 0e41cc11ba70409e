/**
 * Micro benchmark of the cluster's subject codec (src/cluster/subject-codec.ts): topic →
 * subject and subject → topic per kind of topic, and filter expansion. Not a test: it
 * prints numbers for the README and for choosing fast paths.
 *
 * Usage: npm run build && node dist/bench/subject-codec-bench.js [ms-per-round=300] [rounds=5]
 * Prints, per case, the median of the rounds in million ops/s and ns/op.
 */
import { filterToSubjects, isCodecRefusal, subjectToTopic, topicToSubject } from '../src/cluster/subject-codec.js';

const roundMs = Number(process.argv[2] ?? '300');
const rounds = Number(process.argv[3] ?? '5');

const topics: Array<[string, string]> = [
  ['plain (fast path)', 'bench/device/42/telemetry'],
  ['escaped ASCII', 'plant 3/line.7/temp=C/$raw'],
  ['empty levels', '/devices//status/'],
  ['non-ASCII', 'usine/capteur/température/°C'],
  ['emoji', 'chat/😀/🎉/room-1'],
  ['long plain (1 KiB)', Array.from({ length: 64 }, (_, i) => `level-${i}-abcdefg`).join('/').slice(0, 1024)],
  ['long escaped (~1 KiB)', Array.from({ length: 40 }, (_, i) => `l.${i} é`).join('/')],
];

let sink = 0;

/** Runs `op` in batches until `roundMs` has passed; returns ops/s. */
function measure(op: () => void): number {
  const batch = 1000;
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(roundMs) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < batch; i++) op();
    n += batch;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function report(name: string, op: () => void): void {
  for (let i = 0; i < 3; i++) measure(op); // warm-up, lets the JIT settle
  const r: number[] = [];
  for (let i = 0; i < rounds; i++) r.push(measure(op));
  const m = median(r);
  console.log(`${name.padEnd(44)} ${(m / 1e6).toFixed(2).padStart(6)} M ops/s ${(1e9 / m).toFixed(0).padStart(6)} ns/op`);
}

console.log(`# subject-codec, Node.js ${process.version}, ${rounds} rounds of ${roundMs} ms, median`);
for (const [name, topic] of topics) {
  const built = topicToSubject(topic, 1);
  if (isCodecRefusal(built)) throw new Error(`${name}: ${built.message}`);
  // A flat string, as a subject read from the NATS socket is (the encoder's is a rope).
  const subject = Buffer.from(built, 'latin1').toString('latin1');
  console.log(`# ${name}: ${topic.length} chars → ${subject.length} bytes`);
  report(`encode ${name}`, () => {
    sink += (topicToSubject(topic, 1) as string).length;
  });
  report(`decode ${name}`, () => {
    sink += subjectToTopic(subject)!.topic.length;
  });
}
for (const filter of ['bench/+/telemetry', 'bench/device/#', 'usine/+/température/#']) {
  report(`filter ${filter}`, () => {
    const r = filterToSubjects(filter);
    if (!isCodecRefusal(r)) sink += r.patterns.length;
  });
}
if (sink === 42) console.log('');
