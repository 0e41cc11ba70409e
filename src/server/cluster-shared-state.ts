/**
 * The security state every node of a cluster shares (issue 12), wired to this node's
 * enforcement: certificate revocations (each issuer's newest CRL that a node loaded, as
 * `crl.<issuer hash>` in the shared state bucket) reach the RevocationEnforcer, which cuts
 * the revoked sessions and refuses their CONNECTs on every listener; the ban list lives in
 * the bucket (cluster-bans.ts), and a change another node made reloads it here and cuts
 * the clients it now refuses. Owns: publishing this node's CRLs, checking the CRLs others
 * published, and those callbacks. Must not: talk to NATS itself (cluster/shared-state.ts
 * does) or decide what a ban or a CRL matches (ban-list.ts, revocation.ts).
 *
 * SECURITY: fail closed. The bucket is read in full before the admin side and the
 * listeners start (a failed read fails the start), and while the state is being re-read
 * after a NATS outage CONNECTs are refused (0x88): nobody is admitted as if nothing were
 * revoked or banned. A CRL from the bucket is applied only if it parses, sits under its
 * issuer's key and is newer than the one this node applied for that issuer (a replayed old
 * CRL cannot lift a revocation); when this node holds the certificate of its issuer (a
 * listener's `tls.ca`, the built-in PKI) its signature must verify. A deleted CRL entry
 * lifts nothing.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Broker } from '../broker/broker.js';
import { SharedState, type SharedKind } from '../cluster/shared-state.js';
import type { ClusterNode } from '../cluster/cluster-node.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { parseCrl, verifyCrlSignature, type CrlInfo } from '../pki/index.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import type { BanList, BanStore } from '../security/limits/ban-list.js';
import { BAN_PREFIX, ClusterBanStore } from './cluster-bans.js';
import { configuredPkiDir, pkiLayout } from './pki-layout.js';
import { normalizeDistinguishedName, type RevocationEnforcer } from './revocation.js';

const CRL_PREFIX = 'crl';
const PEM_CRL = /-----BEGIN (X509 CRL|CRL)-----[\s\S]*?-----END \1-----/g;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface ClusterSharedStateOptions {
  cluster: ClusterNode;
  config: BastionConfig;
  baseDir: string;
  dataDir: string;
  broker: Broker;
  revocation: RevocationEnforcer;
  logger: Logger;
  /**
   * More kinds of shared entries (cluster-access.ts), registered before the bucket is read.
   * `onClusterCrl` hears each CRL of another node applied here whose signature verified
   * (cluster-pki.ts keeps its CRL numbers above them).
   */
  kinds?: Array<{ register(state: SharedState): void; onClusterCrl?(crl: CrlInfo): void }>;
}

export interface ClusterSharedState {
  /** The admin side's ban store: the cluster's entries (admin.db's own rows are moved into it). */
  readonly banStore: (local: BanStore) => BanStore;
  /** The ban list built on `banStore`: another node's change reloads it and cuts the clients it now refuses. */
  enforceBans(bans: BanList): void;
  stop(): void;
}

/** The bucket key of an issuer's CRL: a hash of its normalised name (keys allow few characters). */
export function crlKeyOf(issuer: string): string {
  return `${CRL_PREFIX}.${createHash('sha256').update(normalizeDistinguishedName(issuer)).digest('hex').slice(0, 40)}`;
}

/** Whether CRL `a` supersedes `b` of the same issuer: a higher CRL number, else a later thisUpdate. */
function newer(a: CrlInfo, b: CrlInfo): boolean {
  if (a.crlNumber !== null && b.crlNumber !== null && a.crlNumber !== b.crlNumber) return a.crlNumber > b.crlNumber;
  return a.thisUpdate.getTime() > b.thisUpdate.getTime();
}

function parsedOrNull(pem: string): CrlInfo | null {
  try {
    return parseCrl(pem);
  } catch {
    return null;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The CRLs of the cluster: this node publishes the CRLs its listeners load, and applies
 * the ones other nodes published.
 */
class SharedRevocations implements SharedKind {
  /** Per key: the CRL applied here (ours or the cluster's). */
  private readonly applied = new Map<string, CrlInfo>();
  /** Per key: the newest CRL this node's listeners loaded (sent again after an outage). */
  private readonly local = new Map<string, string>();
  /** Checks and applications, one at a time, in the bucket's order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly state: SharedState,
    private readonly enforcer: RevocationEnforcer,
    private readonly anchors: () => string[],
    private readonly logger: Logger,
    /** A CRL from the cluster applied here, its signature verified. */
    private readonly onApplied: (crl: CrlInfo) => void = () => {},
  ) {}

  apply(key: string, value: Uint8Array | null): void {
    if (value === null) {
      this.logger.warn({ key }, 'a CRL entry of the cluster was deleted; the revocations it carried stay in force');
      return;
    }
    const pem = Buffer.from(value).toString('utf8');
    this.queue = this.queue.then(() => this.check(key, pem)).catch((err: unknown) => this.logger.error({ key, err: errText(err) }, 'a CRL of the cluster could not be applied'));
  }

  /** Resolves once every CRL taken in so far is applied. */
  settled(): Promise<void> {
    return this.queue;
  }

  private async check(key: string, pem: string): Promise<void> {
    const crl = parsedOrNull(pem);
    if (crl === null || (pem.match(PEM_CRL) ?? []).length !== 1) {
      this.logger.error({ key }, 'a CRL entry of the cluster is not one readable CRL; ignored');
      return;
    }
    if (crlKeyOf(crl.issuer) !== key) {
      this.logger.error({ key, issuer: crl.issuer }, 'a CRL entry of the cluster sits under another issuer\'s key; ignored');
      return;
    }
    const held = this.applied.get(key);
    if (held !== undefined && !newer(crl, held)) {
      // The same CRL again is this node's own write coming back; an older one would lift revocations.
      if (newer(held, crl)) this.logger.warn({ key, issuer: crl.issuer, crlNumber: crl.crlNumber?.toString() ?? null }, 'SECURITY: a CRL entry of the cluster is older than the one in force; ignored');
      return;
    }
    const verdict = await this.verify(pem, crl.issuer);
    if (verdict === 'bad') {
      this.logger.error({ key, issuer: crl.issuer }, 'SECURITY: a CRL entry of the cluster does not verify against its issuer\'s certificate; ignored');
      return;
    }
    // The check awaited: a newer CRL may have been applied meanwhile (one of this node's listeners).
    const now = this.applied.get(key);
    if (now !== undefined && !newer(crl, now)) return;
    this.applied.set(key, crl);
    const kicked = this.enforcer.applyShared(pem);
    this.logger.info({ issuer: crl.issuer, crlNumber: crl.crlNumber?.toString() ?? null, revoked: crl.revoked.size, disconnected: kicked.length, verified: verdict === 'ok' }, 'CRL from the cluster applied');
    // SECURITY: only a verified CRL may move anything of this node's (an unverifiable one with a huge number would).
    if (verdict === 'ok') this.onApplied(crl);
  }

  /** ok: signed by a certificate of its issuer this node holds; bad: such certificates exist and none verifies; unknown: none here. */
  private async verify(pem: string, issuer: string): Promise<'ok' | 'bad' | 'unknown'> {
    const want = normalizeDistinguishedName(issuer);
    let known = false;
    for (const certPem of this.anchors()) {
      let subject: string;
      try {
        subject = normalizeDistinguishedName(new X509Certificate(certPem).subject);
      } catch {
        continue;
      }
      if (subject !== want) continue;
      known = true;
      try {
        if (await verifyCrlSignature(pem, certPem)) return 'ok';
      } catch {
        // A certificate whose key cannot check this signature: another one may.
      }
    }
    return known ? 'bad' : 'unknown';
  }

  /** A CRL file one of this node's listeners loaded: each of its CRLs goes to the bucket unless the bucket holds a newer one. */
  publish(crlPem: string): void {
    for (const pem of crlPem.match(PEM_CRL) ?? []) {
      const crl = parsedOrNull(pem);
      if (crl === null) continue;
      const key = crlKeyOf(crl.issuer);
      const mine = this.local.get(key);
      const mineParsed = mine !== undefined ? parsedOrNull(mine) : null;
      if (mineParsed !== null && !newer(crl, mineParsed)) continue;
      this.local.set(key, pem);
      const held = this.applied.get(key);
      if (held === undefined || newer(crl, held)) this.applied.set(key, crl);
      this.send(key, pem, crl);
    }
  }

  /** After an outage: this node's CRLs again (a write may have failed meanwhile). */
  republish(): void {
    for (const [key, pem] of this.local) {
      const crl = parsedOrNull(pem);
      if (crl !== null) this.send(key, pem, crl);
    }
  }

  private send(key: string, pem: string, crl: CrlInfo): void {
    const bytes = Buffer.from(pem);
    this.state
      .compareAndSet(key, async (current) => {
        if (current === null) return bytes;
        const text = Buffer.from(current).toString('utf8');
        const there = parsedOrNull(text);
        if (there === null || crlKeyOf(there.issuer) !== key || newer(crl, there)) return bytes;
        // SECURITY: an entry no node would accept (a forged signature) must not hold back a genuine CRL.
        return (await this.verify(text, there.issuer)) === 'bad' ? bytes : null;
      })
      .then(
        (written) => {
          if (written) this.logger.info({ issuer: crl.issuer, crlNumber: crl.crlNumber?.toString() ?? null, revoked: crl.revoked.size }, 'CRL shared with the cluster');
        },
        (err: unknown) => this.logger.error({ issuer: crl.issuer, err: errText(err) }, 'CRL not shared with the cluster (sent again after the next NATS reconnect)'),
      );
  }
}

/** The CA certificates this node trusts (listeners' and the admin API's `tls.ca`, the built-in PKI), read now. */
function trustAnchors(config: BastionConfig, baseDir: string, dataDir: string): () => string[] {
  const layout = pkiLayout(configuredPkiDir(config.pki.dir, baseDir, dataDir));
  const files = new Set<string>([layout.rootCert, layout.intermediateCert]);
  for (const l of config.listeners) if (l.tls?.ca !== undefined) files.add(resolve(baseDir, l.tls.ca));
  if (config.admin?.tls.ca !== undefined) files.add(resolve(baseDir, config.admin.tls.ca));
  return () => {
    const pems: string[] = [];
    for (const file of files) {
      try {
        pems.push(...(readFileSync(file, 'utf8').match(PEM_CERTIFICATE) ?? []));
      } catch {
        // Not there on this node (no built-in PKI, say): nothing to check against.
      }
    }
    return pems;
  };
}

/**
 * Reads the cluster's revocations and bans (fail closed: rejects when it cannot), applies
 * them, and keeps following them. Call before the admin side and the listeners start.
 */
export async function startClusterSharedState(opts: ClusterSharedStateOptions): Promise<ClusterSharedState> {
  const { broker, logger } = opts;
  const cluster = opts.config.cluster;
  if (cluster === undefined) throw new Error('startClusterSharedState without a cluster section');
  const state = await SharedState.open({ conn: opts.cluster.conn, replicas: cluster.replicas, logger });
  const onClusterCrl = (crl: CrlInfo): void => {
    for (const k of opts.kinds ?? []) {
      try {
        k.onClusterCrl?.(crl);
      } catch (err) {
        logger.error({ issuer: crl.issuer, err: errText(err) }, 'a listener of the cluster\'s CRLs failed');
      }
    }
  };
  const revocations = new SharedRevocations(state, opts.revocation, trustAnchors(opts.config, opts.baseDir, opts.dataDir), logger, onClusterCrl);
  let bans: BanList | null = null;
  const enforce = (): void => {
    if (bans === null) return;
    bans.reload();
    const list = bans;
    const kicked = broker.disconnectWhere((client) => list.refusal(client) !== null, ReasonCode.AdministrativeAction, 'banned');
    for (const clientId of kicked) logger.warn({ clientId }, 'client disconnected: refused by a ban list change from the cluster');
    logger.info({ entries: list.list().length, disconnected: kicked.length }, 'ban list changed by another node of the cluster');
  };
  const banStore = new ClusterBanStore(state, logger, enforce);
  state.register(CRL_PREFIX, revocations);
  state.register(BAN_PREFIX, banStore);
  for (const k of opts.kinds ?? []) k.register(state);
  try {
    await state.start();
  } catch (err) {
    state.stop();
    throw new Error(`cannot read the cluster's revocations and bans: ${errText(err)}`);
  }
  opts.revocation.onCrlApplied((crlPem) => revocations.publish(crlPem));
  state.onReady(() => revocations.republish());
  // SECURITY: between a NATS outage and the re-read of the shared state, nobody is admitted.
  broker.addAdmissionGuard(() => (state.ready ? null : { reasonCode: ReasonCode.ServerUnavailable, reason: 'the cluster\'s revocations and bans are being read again' }));
  logger.info({ bans: banStore.listBans().length }, 'cluster revocations and bans read');
  return {
    banStore: (local) => {
      const moved = banStore.adopt(local);
      if (moved > 0) logger.info({ moved }, 'ban list entries of this data directory moved into the cluster');
      return banStore;
    },
    enforceBans(list) {
      bans = list;
    },
    stop() {
      state.stop();
    },
  };
}
