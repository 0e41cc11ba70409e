/**
 * Scenario A "hold" of `--fleet`: N idle mTLS devices held by one Bastion. Measures the
 * time until all N are connected with full handshakes, the broker's RSS with them held,
 * its event-loop lag p99 over an idle window (prom-client's histogram, reset by a scrape
 * at the window's start and read by one at its end), the publish→deliver time to one
 * device meanwhile, and the time until all N are back after disconnecting, resuming their
 * TLS sessions. Owns: that sequence. Must not: report a figure whose preconditions failed
 * (it is invalid, with the reason) or wait without a deadline.
 */
import os from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { FleetBroker, type FleetPki } from './fleet-scale-broker.js';
import { Generators } from './fleet-scale-generators.js';
import { FD_MARGIN, FLEET_DEFAULTS, promValue, type FleetOptions } from './fleet-scale-options.js';
import { runProbe, type ProbeResult } from './fleet-scale-probe.js';
import { round } from './round.js';
import { invalidWhen } from './scenario-runs.js';
import { sleep } from './sleep.js';

export interface Figure {
  value: number | null;
  invalid: string | null;
}

export interface HoldResult {
  devices: number;
  /** The run failed outright (no figure): why. */
  error: string | null;
  connectSeconds: Figure;
  connectPerSecond: number | null;
  brokerRssBeforeKb: number | null;
  brokerRssHeldKb: number | null;
  kbPerConnection: Figure;
  eventLoopLagP99Ms: Figure;
  /**
   * The same window's min and p50, and the p99 of an idle Node process measured the same
   * way (the coordinator's own loop, 10 ms resolution like prom-client's): every value
   * includes the 10 ms sampling interval, so an idle process reads ~10–12 ms, not 0.
   */
  eventLoopLag: { minMs: number | null; p50Ms: number | null; idleNodeP99Ms: number | null };
  holdWindowSeconds: number;
  probe: (ProbeResult & { invalid: string | null }) | null;
  resumeSeconds: Figure;
  resumePerSecond: number | null;
  resumed: number | null;
  resumeFull: number | null;
  generatorRssKb: number | null;
  /** Broker and generator CPU (user + system) per device over (1) and over (5), ms. */
  cpu: { connectBrokerMs: number | null; connectGeneratorsMs: number | null; resumeBrokerMs: number | null; resumeGeneratorsMs: number | null };
  /** V8 heap in use in the broker at the end of the idle window (nodejs_heap_size_used_bytes), MB. */
  brokerHeapUsedMb: number | null;
  /** Machine load average (1 min) before (1): other work on the machine shows here. */
  loadAverage: number;
  notes: string[];
}

export interface Running {
  broker: FleetBroker | null;
  gens: Generators | null;
}

/** Ends a scenario: its generators first (they would reconnect), then its broker. */
export async function stopRunning(running: Running, broker: FleetBroker): Promise<void> {
  running.gens?.kill();
  await running.gens?.exited();
  running.gens = null;
  await broker.stop();
  running.broker = null;
}

const fig = (value: number | null, checks: ReadonlyArray<readonly [boolean, string]>): Figure => ({ value, invalid: invalidWhen(checks).invalid ?? null });

/** Prints how far a connect command got every few seconds (a 50,000-device connect takes minutes). */
function progress(label: string, gens: Generators, total: number): () => void {
  const t0 = Date.now();
  const timer = setInterval(() => process.stderr.write(`  ${label}: ${gens.back()}/${total} after ${Math.round((Date.now() - t0) / 1000)} s\n`), 10_000);
  return () => clearInterval(timer);
}

export async function runHold(o: FleetOptions, pki: FleetPki, workDir: string, running: Running): Promise<HoldResult> {
  const n = o.devices;
  const r: HoldResult = {
    devices: n,
    error: null,
    connectSeconds: { value: null, invalid: 'not measured' },
    connectPerSecond: null,
    brokerRssBeforeKb: null,
    brokerRssHeldKb: null,
    kbPerConnection: { value: null, invalid: 'not measured' },
    eventLoopLagP99Ms: { value: null, invalid: 'not measured' },
    eventLoopLag: { minMs: null, p50Ms: null, idleNodeP99Ms: null },
    holdWindowSeconds: o.holdSeconds,
    probe: null,
    resumeSeconds: { value: null, invalid: 'not measured' },
    resumePerSecond: null,
    resumed: null,
    resumeFull: null,
    generatorRssKb: null,
    cpu: { connectBrokerMs: null, connectGeneratorsMs: null, resumeBrokerMs: null, resumeGeneratorsMs: null },
    brokerHeapUsedMb: null,
    loadAverage: 0,
    notes: [],
  };
  const perDevice = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : round((b - a) / n, 2));
  // The broker holds N device sockets, the probe's two, the admin listener's and its files.
  const broker = await FleetBroker.create('bastion', join(workDir, 'hold-bastion'), pki, n + FD_MARGIN);
  running.broker = broker;
  try {
    await broker.start();
    await sleep(2_000);
    r.brokerRssBeforeKb = broker.rssKb();
    const gens = await Generators.start(o.generators, n, { host: '127.0.0.1', port: broker.port, ca: pki.caPem, certs: pki.clients, clientIdPrefix: 'fleet-hold-', keepaliveS: 600 });
    running.gens = gens;
    // At least 100 full handshakes a second, or the figure is not worth waiting for.
    const connectDeadlineMs = 60_000 + n * 10;

    // (1) N devices, full handshakes, `concurrency` in flight per generator.
    process.stderr.write(`hold: connecting ${n} devices (full mTLS handshakes, ${o.generators} × ${o.concurrency} in flight)\n`);
    r.loadAverage = round(os.loadavg()[0] ?? 0, 2) ?? 0;
    let stop = progress('hold connect', gens, n);
    const cpu0 = broker.cpuMs();
    const gen0 = (await gens.stats()).cpuMs;
    const t0 = performance.timeOrigin + performance.now();
    const first = await gens.connect({ resume: false, concurrency: o.concurrency, backoffMs: 0, retryUntil: 0, timeoutMs: 30_000 }, connectDeadlineMs, 'connecting the fleet').finally(stop);
    const lastAt = first.backAt.reduce((a, b) => Math.max(a, b), t0);
    const secs = (lastAt - t0) / 1000;
    r.connectSeconds = fig(round(secs, 1), [
      [first.notBack > 0, `${first.notBack} of ${n} devices refused or failed (${first.errors.join('; ')})`],
      [first.resumed > 0, `${first.resumed} handshakes resumed where full ones were asked for`],
    ]);
    r.connectPerSecond = round(first.backAt.length / secs);
    r.cpu.connectBrokerMs = perDevice(cpu0, broker.cpuMs());
    r.cpu.connectGeneratorsMs = perDevice(gen0, (await gens.stats()).cpuMs);
    process.stderr.write(`hold: ${first.backAt.length}/${n} connected in ${round(secs, 1)} s${first.notBack > 0 ? `, ${first.notBack} failed: ${first.errors.join('; ')}` : ''}\n`);

    // (2) RSS with all N held (after a moment for the last writes to settle).
    await sleep(3_000);
    const held = await gens.stats();
    r.brokerRssHeldKb = broker.rssKb();
    r.generatorRssKb = held.rssKb;
    const perConn = r.brokerRssHeldKb !== null && r.brokerRssBeforeKb !== null ? (r.brokerRssHeldKb - r.brokerRssBeforeKb) / n : null;
    r.kbPerConnection = fig(round(perConn, 1), [[held.held < n, `${held.held} of ${n} devices held when RSS was read`]]);

    // (3) event-loop lag p99 over an idle window: the first scrape resets prom-client's histogram.
    let lagError: string | null = null;
    const t3 = performance.now();
    const control = monitorEventLoopDelay({ resolution: 10 });
    control.enable();
    await broker.metrics().catch((e: unknown) => (lagError = `metrics scrape failed: ${(e as Error).message}`));
    await sleep(o.holdSeconds * 1000);
    const text = await broker.metrics().catch((e: unknown) => {
      lagError = `metrics scrape failed: ${(e as Error).message}`;
      return '';
    });
    control.disable();
    r.holdWindowSeconds = round((performance.now() - t3) / 1000, 1) ?? o.holdSeconds;
    const ms = (v: number | null): number | null => (v === null ? null : round(v * 1000, 2));
    r.eventLoopLag = { minMs: ms(promValue(text, 'nodejs_eventloop_lag_min_seconds')), p50Ms: ms(promValue(text, 'nodejs_eventloop_lag_p50_seconds')), idleNodeP99Ms: round(control.percentile(99) / 1e6, 2) };
    const lag = promValue(text, 'nodejs_eventloop_lag_p99_seconds');
    const heap = promValue(text, 'nodejs_heap_size_used_bytes');
    r.brokerHeapUsedMb = heap === null ? null : round(heap / 1024 / 1024, 1);
    const during = await gens.stats();
    r.eventLoopLagP99Ms = fig(lag === null ? null : round(lag * 1000, 2), [
      [lagError !== null, lagError ?? ''],
      [lagError === null && lag === null, 'nodejs_eventloop_lag_p99_seconds not in the scrape'],
      [during.lost > held.lost, `${during.lost - held.lost} device connection(s) lost during the window`],
      [during.held < n, `${during.held} of ${n} devices held`],
    ]);

    // (4) one device's publish→deliver time while the others are held.
    process.stderr.write(`hold: probe, ${o.probes} messages at ${FLEET_DEFAULTS.probeRate}/s\n`);
    try {
      const p = await runProbe(broker.port, pki.caPem, pki.clients[0]!, o.probes, FLEET_DEFAULTS.probeRate);
      const after = await gens.stats();
      r.probe = {
        ...p,
        invalid:
          invalidWhen([
            [p.delivered < p.sent, `${p.sent - p.delivered} of ${p.sent} probe messages never delivered`],
            [after.held < n, `${after.held} of ${n} devices held during the probe`],
          ]).invalid ?? null,
      };
    } catch (e) {
      r.probe = { sent: o.probes, delivered: 0, p50Us: null, p99Us: null, maxUs: null, invalid: `probe failed: ${(e as Error).message}` };
    }

    // (5) every device disconnects, then all come back offering their session tickets.
    const before = await gens.stats();
    process.stderr.write(`hold: ${before.held} devices disconnect; ${before.withTicket} hold a session ticket; reconnecting with them\n`);
    await gens.disconnect(60_000);
    stop = progress('hold resume', gens, n);
    const cpu5 = broker.cpuMs();
    const gen5 = (await gens.stats()).cpuMs;
    const t5 = performance.timeOrigin + performance.now();
    const again = await gens.connect({ resume: true, concurrency: o.concurrency, backoffMs: 0, retryUntil: 0, timeoutMs: 30_000 }, connectDeadlineMs, 'reconnecting the fleet').finally(stop);
    const lastAgain = again.backAt.reduce((a, b) => Math.max(a, b), t5);
    const secs5 = (lastAgain - t5) / 1000;
    r.resumeSeconds = fig(round(secs5, 1), [
      [again.notBack > 0, `${again.notBack} of ${n} devices refused or failed (${again.errors.join('; ')})`],
      [before.withTicket < n, `only ${before.withTicket} of ${n} devices held a session ticket`],
    ]);
    r.resumePerSecond = round(again.backAt.length / secs5);
    r.cpu.resumeBrokerMs = perDevice(cpu5, broker.cpuMs());
    r.cpu.resumeGeneratorsMs = perDevice(gen5, (await gens.stats()).cpuMs);
    r.resumed = again.resumed;
    r.resumeFull = again.full;
    process.stderr.write(`hold: ${again.backAt.length}/${n} back in ${round(secs5, 1)} s, ${again.resumed} resumed, ${again.full} full\n`);
    const end = await gens.stats();
    r.generatorRssKb = Math.max(r.generatorRssKb ?? 0, end.rssKb);
    if (held.lost > 0) r.notes.push(`${held.lost} device connection(s) lost while the fleet connected`);
  } catch (e) {
    r.error = `${(e as Error).message}${broker.alive ? '' : ` (${broker.log()})`}`;
  } finally {
    await stopRunning(running, broker);
  }
  return r;
}
