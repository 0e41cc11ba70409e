/**
 * What behaviour detection adds to every accepted PUBLISH, measured in-process: the
 * broker's one call per message, `Detector.published` (the ClientActivity port), with the
 * built-in rules. Beside the on/off throughput (which swings with other load on a shared
 * machine), this is the cost itself. Owns: that measurement. Must not: start a broker.
 */
import { parseDetectConfig } from '../src/defender/detect/detect-config.js';
import { Detector } from '../src/defender/runtime/detector.js';
import type { AuthorizedClient } from '../src/broker/ports.js';

export interface HotPathCost {
  /** ns per call when a publish repeats the identity's last topic (telemetry on one topic, or a batch). */
  repeatedTopicNs: number;
  /** ns per call when each publish changes topic among four (a device cycling through its metrics). */
  alternatingTopicsNs: number;
}

function nsPerCall(detector: Detector, client: AuthorizedClient, topics: readonly string[], calls: number): number {
  const began = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) detector.published(client, topics[i % topics.length]!, 73);
  return Number(process.hrtime.bigint() - began) / calls;
}

export function measureHotPath(calls = 5_000_000): HotPathCost {
  const cfg = parseDetectConfig(undefined);
  const detector = new Detector({ rules: cfg.rules, windowMs: 30_000, topicLevels: cfg.topicLevels, maxIdentities: cfg.maxIdentities, maxAddresses: cfg.maxAddresses, roleOf: () => 'device', now: Date.now });
  // Only the fields the publish path reads.
  const client = { principal: 'bench-client', clientId: 'bench-client-1', identity: { remoteAddress: '127.0.0.1' } } as unknown as AuthorizedClient;
  const one = ['bench/1/0'];
  const four = ['bench/1/0', 'bench/1/1', 'bench/1/2', 'bench/1/3'];
  // The first rounds warm the JIT; the last is kept.
  let repeatedTopicNs = 0;
  let alternatingTopicsNs = 0;
  for (let round = 0; round < 3; round++) {
    repeatedTopicNs = nsPerCall(detector, client, one, calls);
    alternatingTopicsNs = nsPerCall(detector, client, four, calls);
  }
  return { repeatedTopicNs, alternatingTopicsNs };
}
