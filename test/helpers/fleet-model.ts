/**
 * The fleet model of the behaviour-detection simulations (issue 15): a few hundred devices
 * with their own rate, message size, telemetry topics and network, and what each does in
 * one window of normal life (telemetry, a birth message on connect, a daily cycle, rare
 * reconnects, outages, denials and typo'd passwords). Shared by the core simulation
 * (test/unit/defender-detect-sim.test.ts feeds ClientStats directly) and the end-to-end
 * one (bench/defender-sim.ts sends it through the real broker). Owns: the model and the
 * exact order it draws random numbers in (a seed names one run in both). Must not: know
 * the broker or the detection core; a `FleetSink` says what happened.
 */

export interface FleetDevice {
  /** The device's identity (its certificate's common name end to end). */
  id: string;
  /** Messages a minute on average. */
  rate: number;
  /** Mean message size in bytes (each message ±20%). */
  size: number;
  /** Telemetry topics it uses: `tele/<id>/m0` … */
  metrics: number;
  /** Its network: the first three octets of its IPv4 address. */
  net: string;
  /** Its host octet (DHCP may change it, never the /24). */
  host: number;
  online: boolean;
  /** The window it comes back in after an outage. */
  offlineUntil: number;
}

/** What the model says happened; `at` is ms of simulated time. */
export interface FleetSink {
  /** A session opened from `remote`; the device then sends its birth message (`status/<id>`, 40 bytes). */
  connect(d: FleetDevice, at: number, remote: string): void;
  disconnect(d: FleetDevice, at: number): void;
  publish(d: FleetDevice, topic: string, bytes: number, at: number): void;
  /** The device tried a topic it may not use. */
  authzDenied(d: FleetDevice, topic: string, at: number): void;
  /** A failed login from the device's address claiming its identity (a typo'd password). */
  authFailure(d: FleetDevice, remote: string, at: number): void;
  /** A message delivered to the device (a command from the back end). */
  deliver(d: FleetDevice, topic: string, bytes: number, at: number): void;
}

export function poisson(rand: () => number, lambda: number): number {
  const l = Math.exp(-lambda);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= rand();
  } while (p > l);
  return k - 1;
}

/** `devices` devices; `net(i)` names device i's /24 (10.x.y in the core simulation, 127.x.y end to end). */
export function makeFleet(rand: () => number, devices: number, net: (i: number) => string): FleetDevice[] {
  return Array.from({ length: devices }, (_, i) => ({
    id: `dev-${i}`,
    rate: 2 + rand() * 18,
    size: 50 + rand() * 350,
    metrics: 1 + Math.floor(rand() * 4),
    net: net(i),
    host: 2 + Math.floor(rand() * 200),
    online: false,
    offlineUntil: 0,
  }));
}

export function addressOf(d: FleetDevice): string {
  return `${d.net}.${d.host}`;
}

export function connectDevice(sink: FleetSink, d: FleetDevice, at: number, remote = addressOf(d)): void {
  sink.connect(d, at, remote);
  d.online = true;
}

export function disconnectDevice(sink: FleetSink, d: FleetDevice, at: number): void {
  sink.disconnect(d, at);
  d.online = false;
}

/**
 * Window `w` (of `windowMs`) of normal life for every device, in device order. The order of
 * the random draws is part of the contract: the core simulation's figures depend on it.
 */
export function normalWindow(fleet: readonly FleetDevice[], w: number, windowMs: number, rand: () => number, sink: FleetSink): void {
  const perMin = windowMs / 60_000;
  const windowsPerMinute = 60_000 / windowMs;
  const t0 = w * windowMs;
  const diurnal = 1 + 0.3 * Math.sin((2 * Math.PI * w) / (1440 * windowsPerMinute));
  for (const d of fleet) {
    if (!d.online) {
      if (w >= d.offlineUntil) connectDevice(sink, d, t0 + Math.floor(rand() * windowMs));
      else continue;
    }
    // Rare events of a normal fleet: a reconnect (DHCP may change the host, not the /24), an outage, a denial, a typo'd password.
    if (rand() < 1 / (480 * windowsPerMinute)) {
      disconnectDevice(sink, d, t0 + 1);
      if (rand() < 0.3) d.host = 2 + Math.floor(rand() * 200);
      if (rand() < 0.1) d.offlineUntil = w + Math.round((5 + Math.floor(rand() * 60)) * windowsPerMinute);
      else connectDevice(sink, d, t0 + 2 + Math.floor(rand() * 1000));
      if (!d.online) continue;
    }
    if (rand() < 1 / (2000 * windowsPerMinute)) sink.authzDenied(d, `tele/${d.id}/x`, t0 + 5);
    if (rand() < 1 / (5000 * windowsPerMinute)) for (let i = 0; i < 3; i++) sink.authFailure(d, addressOf(d), t0 + i);
    const n = poisson(rand, d.rate * diurnal * perMin);
    for (let i = 0; i < n; i++) {
      const at = t0 + Math.floor(((i + rand()) / Math.max(n, 1)) * windowMs);
      sink.publish(d, `tele/${d.id}/m${Math.floor(rand() * d.metrics)}`, Math.round(d.size * (0.8 + 0.4 * rand())), at);
    }
    if (rand() < 0.05 * perMin) sink.deliver(d, `cmd/${d.id}/config`, 120, t0 + 30_000);
  }
}
