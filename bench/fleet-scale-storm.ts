/**
 * Scenario B "storm" of `--fleet`, for one broker: M mTLS devices connected, each holding
 * the session ticket of that connection; the broker is stopped (SIGTERM) and started again
 * on the same port with the same config and data directory; every device then reconnects
 * at once (each after its own random backoff) offering its ticket. Measures the time from
 * the broker listening to 99% and 100% of the devices back, the broker's peak RSS and CPU
 * per connection over the storm, and how many handshakes resumed. Owns: that sequence.
 * Must not: report a figure whose preconditions failed (invalid, with the reason) or wait
 * without a deadline.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FleetBroker, type FleetPki } from './fleet-scale-broker.js';
import { Generators } from './fleet-scale-generators.js';
import { stopRunning, type Figure, type Running } from './fleet-scale-hold.js';
import { FD_MARGIN, promSamples, tcpExt, timeToShare, type FleetOptions } from './fleet-scale-options.js';
import { round } from './round.js';
import { invalidWhen } from './scenario-runs.js';
import { sleep } from './sleep.js';

const RSS_SAMPLE_MS = 50;

export interface StormResult {
  broker: 'bastion' | 'mosquitto';
  devices: number;
  error: string | null;
  /** Before the restart: full handshakes, bounded concurrency (not a storm figure). */
  initialConnectSeconds: number | null;
  withTicket: number | null;
  /** From SIGTERM to the new process listening. */
  restartMs: number | null;
  to99Seconds: Figure;
  to100Seconds: Figure;
  brokerRssBeforeKb: number | null;
  /** The highest VmRSS sampled every 50 ms from listening until every device was back, and VmHWM then. */
  peakRssKb: number | null;
  peakHwmKb: number | null;
  /** Broker user + system CPU from listening until every device was back (or the deadline), per device back. */
  cpuMsPerConnection: Figure;
  brokerCpuMs: number | null;
  resumed: number | null;
  full: number | null;
  failedAttempts: number | null;
  notBack: number | null;
  errors: string[];
  generatorCpuMs: number | null;
  /** Bastion: its own counts after the storm (handshakes, failures by reason, refusals, limit hits), from /metrics. */
  brokerCounters: string[];
  /** Machine-wide TCP counters over the storm (/proc/net/netstat): a full accept queue drops or resets connections. */
  tcp: { listenOverflows: number; syncookiesSent: number } | null;
}

function netstat(): Record<string, number> | null {
  try {
    return tcpExt(readFileSync('/proc/net/netstat', 'utf8'));
  } catch {
    return null;
  }
}

const COUNTERS = ['bastion_tls_handshakes_total', 'bastion_tls_handshake_failures_total', 'bastion_connections_refused_total', 'bastion_limit_hits_total'];

export async function runStorm(kind: 'bastion' | 'mosquitto', o: FleetOptions, pki: FleetPki, workDir: string, running: Running): Promise<StormResult> {
  const m = o.stormDevices;
  const notMeasured: Figure = { value: null, invalid: 'not measured' };
  const r: StormResult = {
    broker: kind,
    devices: m,
    error: null,
    initialConnectSeconds: null,
    withTicket: null,
    restartMs: null,
    to99Seconds: notMeasured,
    to100Seconds: notMeasured,
    brokerRssBeforeKb: null,
    peakRssKb: null,
    peakHwmKb: null,
    cpuMsPerConnection: notMeasured,
    brokerCpuMs: null,
    resumed: null,
    full: null,
    failedAttempts: null,
    notBack: null,
    errors: [],
    generatorCpuMs: null,
    brokerCounters: [],
    tcp: null,
  };
  const broker = await FleetBroker.create(kind, join(workDir, `storm-${kind}`), pki, m + FD_MARGIN);
  running.broker = broker;
  let sampler: NodeJS.Timeout | undefined;
  try {
    await broker.start();
    await sleep(1_000);
    r.brokerRssBeforeKb = broker.rssKb();
    const gens = await Generators.start(o.generators, m, { host: '127.0.0.1', port: broker.port, ca: pki.caPem, certs: pki.clients, clientIdPrefix: `fleet-storm-${kind}-`, keepaliveS: 600 });
    running.gens = gens;

    process.stderr.write(`storm ${kind}: connecting ${m} devices (full handshakes)\n`);
    const t0 = performance.timeOrigin + performance.now();
    const first = await gens.connect({ resume: false, concurrency: o.concurrency, backoffMs: 0, retryUntil: 0, timeoutMs: 30_000 }, 60_000 + m * 10, 'connecting the fleet');
    r.initialConnectSeconds = round((first.backAt.reduce((a, b) => Math.max(a, b), t0) - t0) / 1000, 1);
    if (first.notBack > 0) throw new Error(`${first.notBack} of ${m} devices could not connect before the restart (${first.errors.join('; ')})`);
    await sleep(1_000);
    const before = await gens.stats();
    r.withTicket = before.withTicket;

    // The restart: the broker's own shutdown, then the same command, config, port and data directory.
    process.stderr.write(`storm ${kind}: ${before.held} held, ${before.withTicket} with a ticket; restarting the broker\n`);
    const tStop = performance.timeOrigin + performance.now();
    await broker.stop();
    const goneBy = Date.now() + 30_000;
    while ((await gens.stats()).held > 0) {
      if (Date.now() > goneBy) throw new Error('devices still connected 30 s after the broker stopped');
      await sleep(100);
    }
    const tcp0 = netstat();
    const listening = await broker.start();
    r.restartMs = round(listening - tStop);
    const cpu0 = broker.cpuMs();
    let peak = broker.rssKb() ?? 0;
    sampler = setInterval(() => (peak = Math.max(peak, broker.rssKb() ?? 0)), RSS_SAMPLE_MS);
    const genCpu0 = before.cpuMs;

    // Everyone at once, each after a random 0…backoff ms, retrying (0.5–1.5 s apart) until the deadline.
    // Mosquitto took ~10 ms a device here when 3,000 came at once (full handshakes, retries): room for that and more.
    const stormMs = 60_000 + m * 12;
    const storm = await gens.connect({ resume: true, concurrency: 0, backoffMs: o.stormBackoffMs, retryUntil: Date.now() + stormMs, timeoutMs: 20_000 }, stormMs + 40_000, 'the reconnect storm');
    const cpu1 = broker.cpuMs();
    const tcp1 = netstat();
    if (tcp0 !== null && tcp1 !== null) r.tcp = { listenOverflows: (tcp1.ListenOverflows ?? 0) - (tcp0.ListenOverflows ?? 0), syncookiesSent: (tcp1.SyncookiesSent ?? 0) - (tcp0.SyncookiesSent ?? 0) };
    clearInterval(sampler);
    sampler = undefined;
    r.peakRssKb = Math.max(peak, broker.rssKb() ?? 0);
    r.peakHwmKb = broker.peakRssKb();
    if (kind === 'bastion') r.brokerCounters = await broker.metrics().then((t) => promSamples(t, COUNTERS), (e: unknown) => [`metrics: ${(e as Error).message}`]);
    const back = storm.backAt.length;
    const lostAfter = await gens.stats();
    r.generatorCpuMs = lostAfter.cpuMs - genCpu0;
    r.resumed = storm.resumed;
    r.full = storm.full;
    r.failedAttempts = storm.failedAttempts;
    r.notBack = storm.notBack;
    r.errors = storm.errors;
    const t99 = timeToShare(storm.backAt, m, 0.99, listening);
    const t100 = timeToShare(storm.backAt, m, 1, listening);
    r.to99Seconds = { value: t99 === null ? null : round(t99 / 1000, 2), invalid: t99 === null ? `only ${back} of ${m} devices came back (${storm.errors.join('; ')})` : null };
    r.to100Seconds = { value: t100 === null ? null : round(t100 / 1000, 2), invalid: t100 === null ? `${m - back} of ${m} devices never came back within ${stormMs / 1000} s` : null };
    r.brokerCpuMs = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
    r.cpuMsPerConnection = {
      value: r.brokerCpuMs !== null && back > 0 ? round(r.brokerCpuMs / back, 3) : null,
      invalid: invalidWhen([
        [back < m, `${m - back} of ${m} devices never came back`],
        [r.brokerCpuMs === null, 'broker CPU not readable'],
      ]).invalid ?? null,
    };
    process.stderr.write(`storm ${kind}: ${back}/${m} back, 99% in ${r.to99Seconds.value ?? '-'} s, 100% in ${r.to100Seconds.value ?? '-'} s, ${storm.resumed} resumed, ${storm.full} full, ${storm.failedAttempts} failed attempts\n`);
  } catch (e) {
    r.error = `${(e as Error).message}${broker.alive ? '' : ` (${broker.log()})`}`;
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    await stopRunning(running, broker);
  }
  return r;
}
