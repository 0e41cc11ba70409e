/**
 * The OTA half of the composition root (issue 14): the jobs store in
 * `<dataDir>/ota-jobs.db`, the jobs guard in front of the next authorizer, the MQTT jobs
 * service and its timer (the timeout sweep, and noticing jobs the CLI created or
 * canceled); and block transfer (item 4): its guard next to the jobs guard, the transfer
 * service with its fence (jobs store + release index), block source and scheduler; and the
 * campaign engine (ota-campaign-side.ts), stepped by the same timer. In a cluster, the
 * replicas of both files (cluster-ota.ts): registered as shared state kinds by server.ts,
 * attached once the bucket was read; the jobs service's changes then go through them.
 * Owns: building those and their order. Must not: decide anything about jobs or
 * transfers (src/ota/jobs/ and src/ota/transfer/ do).
 *
 * SECURITY: the guards are always in place, so `$bastion/jobs/<identity>/…` and
 * `$bastion/ota/<identity>/…` are the device `<identity>`'s alone whatever the ACL says; a
 * provisioning-only certificate has no identity here.
 */
import { join } from 'node:path';
import type { Broker } from '../broker/broker.js';
import type { ClusterNatsConnection } from '../cluster/nats-connection.js';
import type { DeliveryAuthorizer } from '../broker/ports.js';
import { systemClock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { OtaConfig } from '../core/ota-config.js';
import type { SecurityEvents } from '../core/security-events.js';
import { JobsGuard } from '../ota/jobs/jobs-guard.js';
import { JobsService } from '../ota/jobs/jobs-service.js';
import { JobsMqttService } from '../ota/jobs/mqtt-service.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';
import { BlockSource } from '../ota/transfer/block-source.js';
import { TransferFence } from '../ota/transfer/fence.js';
import { TransferGuard } from '../ota/transfer/transfer-guard.js';
import { TransferService } from '../ota/transfer/transfer-service.js';
import { certificateIdentity } from '../provisioning/provisioning-guard.js';
import { ClusterJobStore, OtaCluster } from './cluster-ota.js';
import { openOtaCampaignSide, type OtaCampaignSide } from './ota-campaign-side.js';

/** How often timers are checked and the CLI's changes looked for. */
const TICK_MS = 250;

export interface OtaSide {
  /** The jobs guard, the transfer guard, then `next`. */
  guard(next: DeliveryAuthorizer): DeliveryAuthorizer;
  /** Once the broker exists: the jobs and transfer services answer, and the timer runs. */
  attach(broker: Broker, events: SecurityEvents): void;
  /** The transfer service once attached (its counters), else null. */
  readonly transfer: TransferService | null;
  /** In a cluster: the shared state kinds of OTA (jobs, campaigns, releases), made on the first call; `replicas` of the image store. */
  clusterKinds(conn: ClusterNatsConnection, replicas: number): OtaCluster[];
  /** In a cluster, after the shared state was read: publish this node's rows, follow the files. */
  attachCluster(): void;
  stop(): void;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function openOtaSide(dataDir: string, logger: Logger, config: OtaConfig): OtaSide {
  // The devices' reports are the broker's writes: see SqliteJobStore.open on durability.
  const store = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE), 'normal');
  let timer: NodeJS.Timeout | null = null;
  // Block transfer (item 4): no state of its own beyond open image files and the pending gets.
  const blocks = new BlockSource(dataDir);
  let transfer: TransferService | null = null;
  let campaigns: OtaCampaignSide | null = null;
  let cluster: OtaCluster | null = null;
  return {
    guard: (next) => new JobsGuard(new TransferGuard(next, certificateIdentity), certificateIdentity),
    get transfer() {
      return transfer;
    },
    clusterKinds(conn, replicas) {
      cluster ??= OtaCluster.open(dataDir, conn, replicas, logger);
      return [cluster];
    },
    attachCluster() {
      cluster?.attach();
    },
    attach(broker, events) {
      // --- block transfer ---
      const fence = new TransferFence(store, dataDir);
      transfer = new TransferService({
        imageFor: (identity, digest) => fence.imageFor(identity, digest),
        readImage: (digest, size, offset, length) => blocks.read(digest, size, offset, length),
        identityOf: certificateIdentity,
        logger,
        clock: systemClock,
        settings: config.transfer,
      });
      broker.services.add(transfer);
      // --- jobs ---
      const service = new JobsService({
        // In a cluster an execution's change is decided in the cluster (cluster-ota.ts).
        store: new ClusterJobStore(store, () => cluster?.jobs ?? null),
        onChange: (o) =>
          events.emit({ type: 'job', action: o.status, actor: o.actor, jobId: o.jobId, identity: o.identity, executionNumber: o.executionNumber, retried: o.retried }),
      });
      const mqtt = new JobsMqttService(service, certificateIdentity, logger);
      broker.services.add(mqtt);
      // Campaigns: their stages and abort rules, stepped before the change check so a new stage is pushed this tick.
      campaigns = openOtaCampaignSide(dataDir, events, logger);
      let seen = store.dataVersion();
      // One sweep at a time: in a cluster each of its changes waits on NATS.
      let sweeping = false;
      const tick = (): void => {
        try {
          if (!sweeping) {
            sweeping = true;
            service
              .sweep()
              .catch((err: unknown) => logger.error({ err: errText(err) }, 'jobs: the timeout sweep failed'))
              .finally(() => (sweeping = false));
          }
          campaigns?.tick();
          const v = store.dataVersion();
          if (v !== seen) {
            seen = v;
            mqtt.storeChanged();
          }
        } catch (err) {
          logger.error({ err: errText(err) }, 'jobs: the OTA tick failed');
        }
      };
      tick();
      timer = setInterval(tick, TICK_MS);
      timer.unref();
    },
    stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
      transfer?.stop();
      campaigns?.stop();
      campaigns = null;
      void blocks.close();
      cluster?.stop();
      cluster = null;
      store.close();
    },
  };
}
