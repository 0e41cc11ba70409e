/**
 * The report of `--fleet`: a table on stdout (header with Node, OpenSSL, Mosquitto, the
 * limits profile and the device counts) and the JSON written next to the other modes'.
 * Owns: formatting. Must not: print an invalid figure as a value or a ratio built on one.
 */
import type { HostInfo } from './host-info.js';
import type { Figure, HoldResult } from './fleet-scale-hold.js';
import type { FleetOptions } from './fleet-scale-options.js';
import type { StormResult } from './fleet-scale-storm.js';
import { CLIENT_CERTS } from './fleet-scale-broker.js';

export interface FleetReportJson {
  generatedAt: string;
  host: HostInfo;
  options: FleetOptions & { limits: 'raised'; clientCertificates: number; keepaliveS: number };
  hold: HoldResult | null;
  storm: { bastion: StormResult | null; mosquitto: StormResult | null; to99Ratio: number | null };
  wallSeconds: number;
}

const int = (v: number): string => Math.round(v).toLocaleString('en-US');
const mb = (kb: number | null): string => (kb === null ? '-' : `${(kb / 1024).toFixed(1)} MB`);

function cell(f: Figure, show: (v: number) => string): string {
  if (f.invalid !== null) return `invalid (${f.invalid})`;
  return f.value === null ? '-' : show(f.value);
}

/** Bastion/Mosquitto of a figure when both are valid. */
export function ratioOf(a: Figure | undefined, b: Figure | undefined): number | null {
  if (a === undefined || b === undefined || a.invalid !== null || b.invalid !== null || a.value === null || b.value === null || b.value === 0) return null;
  return Math.round((a.value / b.value) * 100) / 100;
}

function holdLines(h: HoldResult): string[] {
  const out = [`A. hold: ${int(h.devices)} idle mTLS devices on one Bastion (TLS 1.3, full handshakes, keepalive 600 s)`, '', '| figure | value |', '|---|---|'];
  if (h.error !== null) out.push(`| run | FAILED: ${h.error} |`);
  out.push(`| (1) all connected, full handshakes | ${cell(h.connectSeconds, (v) => `${v} s (${h.connectPerSecond === null ? '-' : int(h.connectPerSecond)} conn/s)`)} |`);
  out.push(`| (2) broker RSS with all held | ${cell(h.kbPerConnection, (v) => `${mb(h.brokerRssHeldKb)} (${mb(h.brokerRssBeforeKb)} before): ${v} KB per connection`)} |`);
  const l = h.eventLoopLag;
  out.push(`| (3) broker event-loop lag p99, ${h.holdWindowSeconds} s idle window | ${cell(h.eventLoopLagP99Ms, (v) => `${v} ms (min ${l.minMs ?? '-'}, p50 ${l.p50Ms ?? '-'}; an idle Node process, same 10 ms sampling: p99 ${l.idleNodeP99Ms ?? '-'})`)} |`);
  const p = h.probe;
  const probe = p === null ? '-' : p.invalid !== null ? `invalid (${p.invalid})` : `p50 ${p.p50Us ?? '-'} µs, p99 ${p.p99Us ?? '-'} µs, max ${p.maxUs ?? '-'} µs (${p.delivered}/${p.sent})`;
  out.push(`| (4) publish→deliver to one device, ${p?.sent ?? '-'} at 100/s | ${probe} |`);
  out.push(`| (5) all back after disconnecting, with their tickets | ${cell(h.resumeSeconds, (v) => `${v} s (${h.resumePerSecond === null ? '-' : int(h.resumePerSecond)} conn/s), ${int(h.resumed ?? 0)} resumed, ${int(h.resumeFull ?? 0)} full`)} |`);
  const c = h.cpu;
  out.push(
    '',
    `CPU per device, broker / generators: connect ${c.connectBrokerMs ?? '-'} / ${c.connectGeneratorsMs ?? '-'} ms, resume ${c.resumeBrokerMs ?? '-'} / ${c.resumeGeneratorsMs ?? '-'} ms; broker V8 heap used ${h.brokerHeapUsedMb ?? '-'} MB; generators ${mb(h.generatorRssKb)} RSS in all; load average before ${h.loadAverage}${h.notes.length > 0 ? `; ${h.notes.join('; ')}` : ''}`,
  );
  return out;
}

function stormLines(b: StormResult | null, m: StormResult | null, devices: number, backoffMs: number): string[] {
  const out = [
    `B. storm: ${int(devices)} mTLS devices reconnect at once after a broker restart (same port, config, data dir), each after a random 0–${backoffMs} ms backoff, offering its ticket`,
    '',
    '| figure | Bastion | Mosquitto | Bastion/Mosquitto |',
    '|---|---|---|---|',
  ];
  const both = [b, m];
  const row = (label: string, f: (s: StormResult) => string, ratio = ''): void => {
    out.push(`| ${label} | ${both.map((s) => (s === null ? 'not run' : s.error !== null ? `FAILED: ${s.error}` : f(s))).join(' | ')} | ${ratio} |`);
  };
  const r99 = ratioOf(b?.to99Seconds, m?.to99Seconds);
  row('listening → 99% back', (s) => cell(s.to99Seconds, (v) => `${v} s`), r99 === null ? '-' : `${r99}×`);
  const r100 = ratioOf(b?.to100Seconds, m?.to100Seconds);
  row('listening → 100% back', (s) => cell(s.to100Seconds, (v) => `${v} s`), r100 === null ? '-' : `${r100}×`);
  row('resumed / full handshakes', (s) => `${int(s.resumed ?? 0)} / ${int(s.full ?? 0)}`);
  row('failed attempts (retried) / never back', (s) => `${int(s.failedAttempts ?? 0)} / ${int(s.notBack ?? 0)}`);
  row('peak broker RSS (VmRSS sampled, VmHWM)', (s) => `${mb(s.peakRssKb)}, ${mb(s.peakHwmKb)} (${mb(s.brokerRssBeforeKb)} idle)`);
  const rc = ratioOf(b?.cpuMsPerConnection, m?.cpuMsPerConnection);
  row('broker CPU per connection', (s) => cell(s.cpuMsPerConnection, (v) => `${v} ms`), rc === null ? '-' : `${rc}×`);
  row('accept queue overflows / SYN cookies sent (machine-wide)', (s) => (s.tcp === null ? '-' : `${int(s.tcp.listenOverflows)} / ${int(s.tcp.syncookiesSent)}`));
  row('generators CPU over the storm', (s) => (s.generatorCpuMs === null ? '-' : `${int(s.generatorCpuMs)} ms`));
  row('before: connect (full), devices with a ticket, restart', (s) => `${s.initialConnectSeconds ?? '-'} s, ${int(s.withTicket ?? 0)}, ${s.restartMs === null ? '-' : int(s.restartMs)} ms`);
  const errs = both.flatMap((s) => (s !== null && s.errors.length > 0 ? [`${s.broker}: ${s.errors.join('; ')}`] : []));
  if (errs.length > 0) out.push('', `errors seen: ${errs.join(' | ')}`);
  if (b !== null && b.brokerCounters.length > 0) out.push('', `Bastion's counters after the storm: ${b.brokerCounters.join(', ')}`);
  return out;
}

export function fleetReportText(r: FleetReportJson): string {
  const h = r.host;
  const lines = [
    `bench --fleet (issue 17): Node ${h.node}, OpenSSL ${h.openssl}; Mosquitto ${h.mosquitto ?? '(not found)'} (system OpenSSL ${h.systemOpenssl ?? '?'}); ${h.cpus} × ${h.cpuModel}`,
    `Bastion limits profile: raised (every limit on, rates and caps above the load); devices share ${r.options.clientCertificates} client certificates of the bench CA, each its own client id; sources 127.10.x.y (≤ 500 devices each); hold ${int(r.options.devices)} devices, storm ${int(r.options.stormDevices)} devices; ${r.options.generators} generator processes`,
    '',
  ];
  if (r.hold !== null) lines.push(...holdLines(r.hold), '');
  if (r.storm.bastion !== null || r.storm.mosquitto !== null) lines.push(...stormLines(r.storm.bastion, r.storm.mosquitto, r.options.stormDevices, r.options.stormBackoffMs), '');
  lines.push(`wall time: ${Math.round(r.wallSeconds)} s`);
  return lines.join('\n');
}

export function fleetOptionsJson(o: FleetOptions): FleetReportJson['options'] {
  return { ...o, limits: 'raised', clientCertificates: CLIENT_CERTS, keepaliveS: 600 };
}
