/**
 * OTA in a cluster (issue 14 item 6): every node keeps its own ota-jobs.db and
 * ota-campaigns.db, and every row of them is also an entry of the shared state bucket
 * (`otaj.j.<jobId>`, `otaj.e.<hash>`, `otac.c.<campaignId>`), merged by the joins of
 * ota/jobs/job-rows.ts and ota/campaigns/campaign-rows.ts; releases and their images
 * travel too (cluster-ota-releases.ts). So a job or campaign created
 * with the CLI on one node's data directory reaches devices connected to any node, and an
 * execution has one state in the cluster. Owns: the two replicas (with their own
 * connections to the files), the consequences of a row from the cluster (an execution of
 * a canceled job is canceled here too) and the JobStore the jobs service uses in a cluster.
 * Must not: decide transitions (ota/jobs/) or talk to NATS except through SharedState.
 *
 * How an execution stays one state:
 * - A device's update and the timeout sweep go through `apply`, which in a cluster is a
 *   compare-and-set of the execution's entry on the version the service read: of a device
 *   reporting on node B and the sweep of node A timing out the same execution at the same
 *   moment, exactly one wins; the other gets VersionMismatch (the device is answered with
 *   the current state). The winner alone queues the retry, so no retry is queued twice.
 * - Writes made outside `apply` (the CLI's create and cancel, the campaign engine's
 *   stages, a sweep before the bucket was read) are local SQLite writes, found by the
 *   replica's data_version poll and published joined: a cancel racing a device's final
 *   report at the same version ends in one of the two everywhere (the join's tie-break:
 *   the earlier lastUpdatedAt), never in two different states on two nodes.
 *
 * SECURITY: fail closed: an update that cannot reach NATS rejects, and the device is
 * answered InternalError rather than decided on this node's file alone.
 */
import { join } from 'node:path';
import type { SharedState } from '../cluster/shared-state.js';
import type { Logger } from '../core/logger.js';
import { campaignKey, campaignRowText, decodeCampaignRow, joinCampaignRows, CAMPAIGN_ROW_PREFIX, type CampaignRowData } from '../ota/campaigns/campaign-rows.js';
import { CAMPAIGNS_DB_FILE, SqliteCampaignStore } from '../ota/campaigns/sqlite-campaign-store.js';
import {
  decodeJobRow,
  executionOfRow,
  executionRowOf,
  joinJobRows,
  jobRowText,
  keyOfJobRow,
  patchedExecution,
  retryExecution,
  JOB_ROW_PREFIX,
  type JobStoreRow,
} from '../ota/jobs/job-rows.js';
import { TERMINAL, type ExecutionPatch, type ExecutionRecord, type JobRecord, type JobStore, type NewJob } from '../ota/jobs/ports.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';
import type { ClusterNatsConnection } from '../cluster/nats-connection.js';
import { OtaReleaseReplica } from './cluster-ota-releases.js';
import { RowReplica, type RowKind } from './cluster-rows.js';

function jobsKind(store: SqliteJobStore): RowKind<JobStoreRow> {
  return {
    prefix: JOB_ROW_PREFIX,
    what: 'ota jobs',
    decode: decodeJobRow,
    keyOf: keyOfJobRow,
    text: jobRowText,
    join: joinJobRows,
    read: (like) => store.row(like),
    put: (r) => store.putRow(r),
    all: () => store.allRows(),
    changedSince: (since) => store.changedRows(since),
    dataVersion: () => store.dataVersion(),
    // A job canceled on another node: its executions pending here are canceled here too,
    // at the job's cancel time (so every node makes the same rows), and published.
    afterPut(r) {
      if (r.table === 'executions' && TERMINAL.has(r.row.status)) return false;
      const job = store.job(r.table === 'jobs' ? r.row.id : r.row.job_id);
      if (job === null || job.status !== 'CANCELED' || job.canceledAt === null) return false;
      return (store.cancelJob(job.id, job.canceledAt)?.length ?? 0) > 0;
    },
  };
}

function campaignsKind(store: SqliteCampaignStore): RowKind<CampaignRowData> {
  return {
    prefix: CAMPAIGN_ROW_PREFIX,
    what: 'ota campaigns',
    decode: decodeCampaignRow,
    keyOf: (r) => campaignKey(r.id),
    text: campaignRowText,
    join: joinCampaignRows,
    read: (like) => store.row(like.id),
    put: (r) => (store.putRow(r), true),
    all: () => store.allRows(),
    dataVersion: () => store.dataVersion(),
  };
}

/** The OTA entries of one node: jobs and campaigns (each file through a connection of its own), releases and images. */
export class OtaCluster {
  readonly jobs: RowReplica<JobStoreRow>;
  readonly campaigns: RowReplica<CampaignRowData>;
  readonly releases: OtaReleaseReplica;

  private constructor(
    private readonly jobsFile: SqliteJobStore,
    private readonly campaignsFile: SqliteCampaignStore,
    dataDir: string,
    conn: ClusterNatsConnection,
    replicas: number,
    logger: Logger,
  ) {
    this.jobs = new RowReplica(jobsKind(jobsFile), logger);
    this.campaigns = new RowReplica(campaignsKind(campaignsFile), logger);
    this.releases = new OtaReleaseReplica(dataDir, conn, replicas, logger);
  }

  /** `replicas`: of the image object store (the cluster's replicas). */
  static open(dataDir: string, conn: ClusterNatsConnection, replicas: number, logger: Logger): OtaCluster {
    // The broker's own connection: see SqliteJobStore.open on durability (the rows are in the cluster too).
    const jobs = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE), 'normal');
    try {
      return new OtaCluster(jobs, SqliteCampaignStore.open(join(dataDir, CAMPAIGNS_DB_FILE)), dataDir, conn, replicas, logger);
    } catch (err) {
      jobs.close();
      throw err;
    }
  }

  register(state: SharedState): void {
    this.jobs.register(state);
    this.campaigns.register(state);
    this.releases.register(state);
  }

  /** After the bucket was read. */
  attach(): void {
    this.jobs.attach();
    this.campaigns.attach();
    this.releases.attach();
  }

  stop(): void {
    this.jobs.stop();
    this.campaigns.stop();
    this.releases.stop();
    this.jobsFile.close();
    this.campaignsFile.close();
  }
}

/**
 * The JobStore of the jobs service: this node's file, except that once the cluster's
 * replica is attached an execution's change is decided by compare-and-set in the cluster.
 */
export class ClusterJobStore implements JobStore {
  constructor(
    private readonly local: SqliteJobStore,
    private readonly replica: () => RowReplica<JobStoreRow> | null,
  ) {}

  apply(e: ExecutionRecord, patch: ExecutionPatch, retry: boolean): ExecutionRecord | null | Promise<ExecutionRecord | null> {
    const replica = this.replica();
    if (replica === null || !replica.attached) return this.local.apply(e, patch, retry);
    return (async () => {
      const like: JobStoreRow = { table: 'executions', row: executionRowOf(e) };
      // SECURITY: the change applies only to the state the service decided on (version and
      // status): a cancel that another node merged in at the same version is not overwritten.
      const out = await replica.update(like, (current) =>
        current.table === 'executions' && current.row.version === e.versionNumber && current.row.status === e.status
          ? { table: 'executions', row: patchedExecution(current.row, patch) }
          : null,
      );
      if (out === null || out.table !== 'executions') return null;
      if (retry) replica.put({ table: 'executions', row: retryExecution(out.row, patch.lastUpdatedAt) });
      return executionOfRow(out.row);
    })();
  }

  createJob(job: NewJob, identities: readonly string[]): boolean {
    return this.local.createJob(job, identities);
  }
  addExecutions(jobId: string, identities: readonly string[], at: number): string[] | null {
    return this.local.addExecutions(jobId, identities, at);
  }
  job(id: string): JobRecord | null {
    return this.local.job(id);
  }
  jobs(): JobRecord[] {
    return this.local.jobs();
  }
  executionsOf(jobId: string): ExecutionRecord[] {
    return this.local.executionsOf(jobId);
  }
  execution(jobId: string, identity: string, executionNumber?: number): ExecutionRecord | null {
    return this.local.execution(jobId, identity, executionNumber);
  }
  pending(identity: string): ExecutionRecord[] {
    return this.local.pending(identity);
  }
  cancelJob(id: string, at: number): string[] | null {
    return this.local.cancelJob(id, at);
  }
  overdue(now: number): ExecutionRecord[] {
    return this.local.overdue(now);
  }
  dataVersion(): number {
    return this.local.dataVersion();
  }
  close(): void {
    this.local.close();
  }
}
