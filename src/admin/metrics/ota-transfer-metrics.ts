/**
 * Metrics of OTA block transfer (issue 14 item 4), read at scrape time from the transfer
 * service's counters: data blocks and their bytes sent, and refused requests by error
 * code. Owns: those families. Must not: be updated per block (the service's integers
 * are; this reads them when Prometheus asks) or know the service (the composition root
 * hands a reader of its counters).
 */
import { Counter, type Registry } from 'prom-client';

/** The transfer service's counters (src/ota/transfer/transfer-service.ts `stats`). */
export interface OtaTransferCounts {
  blocksSent: number;
  bytesSent: number;
  refusals: Readonly<Record<string, number>>;
}

/** Every code a refusal can carry, shown at 0 from the start. */
const CODES = ['InvalidRequest', 'InvalidJson', 'NotFound', 'Throttled', 'InternalError'] as const;

export class OtaTransferMetrics {
  private readonly blocks: Counter;
  private readonly bytes: Counter;
  private readonly refusals: Counter<'code'>;

  constructor(
    registry: Registry,
    /** Null while the transfer service is not running. */
    private readonly source: () => OtaTransferCounts | null,
  ) {
    const registers = [registry];
    this.blocks = new Counter({ name: 'bastion_ota_transfer_blocks_total', help: 'OTA image blocks sent to devices (block transfer data messages).', registers });
    this.bytes = new Counter({ name: 'bastion_ota_transfer_bytes_total', help: 'Bytes of the OTA block transfer data messages sent (41-byte header included).', registers });
    this.refusals = new Counter({ name: 'bastion_ota_transfer_refusals_total', help: 'OTA block transfer requests refused, by error code.', labelNames: ['code'], registers });
    for (const code of CODES) this.refusals.inc({ code }, 0);
  }

  refresh(): void {
    const c = this.source();
    if (c === null) return;
    this.blocks.reset();
    this.blocks.inc(c.blocksSent);
    this.bytes.reset();
    this.bytes.inc(c.bytesSent);
    this.refusals.reset();
    for (const code of CODES) this.refusals.inc({ code }, c.refusals[code] ?? 0);
  }
}
