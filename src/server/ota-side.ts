/**
 * The OTA half of the composition root (issue 14): the jobs store in
 * `<dataDir>/ota-jobs.db`, the jobs guard in front of the next authorizer, the MQTT jobs
 * service and its timer (the timeout sweep, and noticing jobs the CLI created or
 * canceled). Owns: building those and their order. Must not: decide anything about jobs
 * (src/ota/jobs/ does).
 *
 * SECURITY: the guard is always in place, so `$bastion/jobs/<identity>/…` is the device
 * `<identity>`'s alone whatever the ACL says; a provisioning-only certificate has no
 * identity here.
 */
import { join } from 'node:path';
import type { Broker } from '../broker/broker.js';
import type { DeliveryAuthorizer } from '../broker/ports.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { JobsGuard } from '../ota/jobs/jobs-guard.js';
import { JobsService } from '../ota/jobs/jobs-service.js';
import { JobsMqttService } from '../ota/jobs/mqtt-service.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';
import { certificateIdentity } from '../provisioning/provisioning-guard.js';

/** How often timers are checked and the CLI's changes looked for. */
const TICK_MS = 250;

export interface OtaSide {
  /** The guard, then `next`. */
  guard(next: DeliveryAuthorizer): DeliveryAuthorizer;
  /** Once the broker exists: the jobs service answers, and the timer runs. */
  attach(broker: Broker, events: SecurityEvents): void;
  stop(): void;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function openOtaSide(dataDir: string, logger: Logger): OtaSide {
  const store = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE));
  let timer: NodeJS.Timeout | null = null;
  return {
    guard: (next) => new JobsGuard(next, certificateIdentity),
    attach(broker, events) {
      const service = new JobsService({
        store,
        onChange: (o) =>
          events.emit({ type: 'job', action: o.status, actor: o.actor, jobId: o.jobId, identity: o.identity, executionNumber: o.executionNumber, retried: o.retried }),
      });
      const mqtt = new JobsMqttService(service, certificateIdentity, logger);
      broker.services.add(mqtt);
      let seen = store.dataVersion();
      const tick = (): void => {
        try {
          service.sweep();
          const v = store.dataVersion();
          if (v !== seen) {
            seen = v;
            mqtt.storeChanged();
          }
        } catch (err) {
          logger.error({ err: errText(err) }, 'jobs: the timeout sweep failed');
        }
      };
      tick();
      timer = setInterval(tick, TICK_MS);
      timer.unref();
    },
    stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
      store.close();
    },
  };
}
