/**
 * The contract between `--fleet` (fleet-scale*.ts) and its generator processes
 * (worker-fleet.ts): the messages over the IPC channel. Owns: their shapes. Must not:
 * contain behaviour.
 */

export interface FleetWorkerInit {
  type: 'init';
  host: string;
  port: number;
  /** PEM: the bench CA, and the client certificates the devices share (device i uses i % certs.length). */
  ca: string;
  certs: { cert: string; key: string }[];
  /** Global index of this generator's first device, and how many it runs. */
  first: number;
  count: number;
  /** MQTT client ids are `${clientIdPrefix}${index}`. */
  clientIdPrefix: string;
  keepaliveS: number;
}

/**
 * Connect every device of this generator that is not connected. `resume`: offer the
 * device's last session ticket. `concurrency`: handshakes in flight (0: all at once, each
 * after a random 0…backoffMs delay, as devices do after a broker restart). `retryUntil`:
 * epoch ms until which a failed device tries again after a random 0.5…1.5 s pause (0: a
 * failure is final). `port`: the broker's port when it moved.
 */
export interface FleetConnectCommand {
  type: 'connect';
  resume: boolean;
  concurrency: number;
  backoffMs: number;
  retryUntil: number;
  timeoutMs: number;
}

export type FleetCommand = FleetWorkerInit | FleetConnectCommand | { type: 'disconnect' } | { type: 'stats' } | { type: 'exit' };

/** What the generator has seen, since it started (counts) or for the last connect command (times). */
export interface FleetStats {
  /** Devices with an open, CONNACKed connection now. */
  held: number;
  /** Devices that hold a TLS session (ticket) to offer. */
  withTicket: number;
  /** Connections that closed without the bench asking (broker restart included). */
  lost: number;
  /** Process RSS, KB, and CPU (user + system), ms. */
  rssKb: number;
  cpuMs: number;
}

export interface FleetConnectResult {
  /** Epoch ms (fractional) at which each device that came back had its CONNACK. */
  backAt: number[];
  /** Devices whose handshake resumed a session (`isSessionReused()`), and full ones. */
  resumed: number;
  full: number;
  /** Failed attempts (refused, TLS error, timeout, CONNACK not accepted), and devices never back. */
  failedAttempts: number;
  notBack: number;
  /** A few distinct failure reasons. */
  errors: string[];
  /** Epoch ms when the command arrived (the generator's own start). */
  startedAt: number;
}

export type FleetReport =
  | { type: 'ready' }
  | { type: 'progress'; back: number }
  | ({ type: 'connected' } & FleetConnectResult)
  | { type: 'disconnected'; closed: number }
  | ({ type: 'stats' } & FleetStats)
  | { type: 'fatal'; message: string };
