/**
 * The provisioning half of the composition root (issue 13): the records in
 * `<dataDir>/provisioning.db`, the guard in front of the ACL, the `provision-token`
 * provider, the MQTT service and the hourly sweep, with the built-in PKI as the CA.
 * Owns: building those and their order. Must not: decide anything about provisioning
 * (src/provisioning/ does).
 *
 * SECURITY: the guard is always in front of the ACL, with or without templates: a claim
 * certificate that reaches a broker whose provisioning is off is still confined to the
 * provisioning topics (and refused there).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.js';
import type { DeliveryAuthorizer } from '../broker/ports.js';
import type { BastionConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import type { DeviceCertificateAuthority, ProvisioningStore, RoleBinder } from '../provisioning/ports.js';
import { ProvisioningGuard } from '../provisioning/provisioning-guard.js';
import { ProvisioningMqttService } from '../provisioning/mqtt-service.js';
import { ProvisioningService } from '../provisioning/provisioning-service.js';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../provisioning/sqlite-provisioning-store.js';
import { ClusterProvisioningStore, provisioningReplica, type ProvisioningReplica } from './cluster-provisioning.js';
import { sanFromText } from '../provisioning/template.js';
import { ProvisionTokenProvider } from '../provisioning/token-provider.js';
import type { PolicyService } from '../security/authz/policy-service.js';
import { configuredPkiDir, pkiLayout } from './pki-layout.js';
import { rootKeyPassphraseFromEnv } from './pki-passphrase.js';
import { PkiService } from './pki-service.js';

/** How often step-1 certificates whose token expired, and renewed certificates past their grace, are revoked. */
const SWEEP_MS = 60_000;

export interface ProvisioningSide {
  /** The provider for listeners naming `provision-token` (null: provisioning is off). */
  readonly tokenProvider: ProvisionTokenProvider | null;
  /** The authorizer the broker uses: the guard, then the ACL. */
  guard(acl: DeliveryAuthorizer): DeliveryAuthorizer;
  /** Once the broker and the rules exist: the service answers, and the sweep runs. */
  attach(broker: Broker, events: SecurityEvents, policy: PolicyService): ProvisioningService | null;
  /** The attached service (EST on the admin listener uses it); null before attach or when provisioning is off. */
  readonly service: ProvisioningService | null;
  /** In a cluster: the records' entries in the shared state (registered before it is read; null when provisioning is off). */
  readonly replica: ProvisioningReplica | null;
  stop(): void;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The built-in PKI as the devices' CA (each operation opens it: another process may have changed it). */
function pkiAuthority(pkiDir: string): DeviceCertificateAuthority {
  const access = { passphrase: rootKeyPassphraseFromEnv() };
  const withPki = async <T>(fn: (pki: PkiService) => Promise<T>): Promise<T> => {
    const pki = await PkiService.open(pkiDir, access);
    try {
      return await fn(pki);
    } finally {
      pki.close();
    }
  };
  return {
    sign: (req) =>
      withPki(async (pki) => {
        const signed = await pki.signCsr({
          csrPem: req.csrPem,
          profile: 'client',
          days: req.days,
          identity: { commonName: req.commonName, organizationalUnits: req.organizationalUnit !== undefined ? [req.organizationalUnit] : [], sans: req.sans.map(sanFromText) },
        });
        return { serialNumber: signed.serialNumber, certPem: signed.certPem, notAfter: signed.notAfter, fingerprint256: signed.fingerprint256 };
      }),
    revoke: (serial, reason) =>
      withPki(async (pki) => {
        let status: string;
        try {
          status = pki.show(serial).status;
        } catch {
          return; // not ours to revoke (not in the inventory)
        }
        if (status !== 'revoked') await pki.revoke(serial, reason);
      }),
    caChainPem: () => readFile(pkiLayout(pkiDir).caChain, 'utf8'),
  };
}

/** Bindings of provisioned identities to their template's roles, in the ACL's run-time store. */
function roleBinder(policy: PolicyService, logger: Logger): RoleBinder {
  return {
    bind(identity, roles) {
      const bound = new Set(policy.listBindings().filter((b) => b.attribute === 'cert.cn' && b.value === identity).map((b) => b.role));
      for (const role of roles) {
        if (bound.has(role)) continue;
        policy.putBinding({ attribute: 'cert.cn', value: identity, role });
      }
      logger.info({ identity, roles }, 'provisioned identity bound to its roles');
    },
    missing(roles) {
      const defined = new Set(policy.current().roles.map((r) => r.name));
      return roles.filter((r) => !defined.has(r));
    },
  };
}

export function openProvisioningSide(config: BastionConfig, baseDir: string, dataDir: string, logger: Logger, resolvePath: (p: string) => string): ProvisioningSide {
  const enabled = Object.keys(config.provisioning.templates).length > 0;
  const file = enabled ? SqliteProvisioningStore.open(join(dataDir, PROVISIONING_DB_FILE)) : null;
  // In a cluster the records are shared (cluster-provisioning.ts): a token works once on any node.
  const replica = file !== null && config.cluster !== undefined ? provisioningReplica(file, logger) : null;
  const store: ProvisioningStore | null = file !== null && replica !== null ? new ClusterProvisioningStore(file, replica) : file;
  let timer: NodeJS.Timeout | null = null;
  let attached: ProvisioningService | null = null;
  return {
    tokenProvider: store !== null ? new ProvisionTokenProvider(() => store) : null,
    guard: (acl) => new ProvisioningGuard(acl),
    attach(broker, events, policy) {
      if (store === null) return null;
      const service = new ProvisioningService({
        config: config.provisioning,
        store,
        ca: pkiAuthority(configuredPkiDir(config.pki.dir, baseDir, dataDir)),
        roles: roleBinder(policy, logger),
        events,
        logger,
        resolvePath,
      });
      broker.services.add(new ProvisioningMqttService(service, logger));
      for (const [name, t] of Object.entries(config.provisioning.templates)) {
        const missing = roleBinder(policy, logger).missing(t.roles);
        if (missing.length > 0) logger.warn({ template: name, missing }, 'a provisioning template names roles the ACL does not define: its registrations are refused until they exist');
      }
      const sweep = (): void => {
        service.sweep().catch((err: unknown) => logger.error({ err: errText(err) }, 'provisioning sweep failed'));
      };
      sweep();
      timer = setInterval(sweep, SWEEP_MS);
      timer.unref();
      logger.info({ templates: Object.keys(config.provisioning.templates) }, 'device provisioning on');
      attached = service;
      return service;
    },
    get service() {
      return attached;
    },
    replica,
    stop() {
      attached = null;
      if (timer !== null) clearInterval(timer);
      store?.close();
    },
  };
}
