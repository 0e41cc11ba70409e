/**
 * Who may do what, shared by every node of a cluster (issue 12): the run-time ACL roles and
 * bindings (cluster-acl.ts), the password users (cluster-users.ts) and the admin API's
 * tokens (cluster-tokens.ts) go through the shared state bucket beside the bans, so a
 * change made on any node (admin API or CLI) is in force on every node within a second.
 * Each node keeps its own authz.db and users.db, written by the cluster's changes
 * (cluster-mirror.ts): the policy service, the login providers and the CLI work on them as
 * without a cluster. Owns: registering those kinds, noticing this node's changes (the
 * policy service's reloads, the admin API's user writes, a poll of users.db for the CLI's)
 * and reloading the rules after the cluster's. Must not: validate entries (the kinds do) or
 * evaluate rules or passwords.
 *
 * SECURITY: the entries are read with the rest of the shared state, before any listener
 * starts (a failed read fails the start), and written into the files before the first
 * client is admitted: a node never admits a client under rules or users it has not read.
 */
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { SharedState } from '../cluster/shared-state.js';
import type { PolicyService } from '../security/authz/policy-service.js';
import type { UserAdmin, UserRecord } from '../security/authn/user-store.js';
import type { TokenStore } from '../admin/api/services.js';
import { ACL_STORE_FILE, SqliteAclStore } from '../store/sqlite/acl-store.js';
import { SqliteUserStore, USERS_DB_FILE } from '../store/sqlite/user-store.js';
import { BINDING_PREFIX, bindingRows, ROLE_PREFIX, roleRows } from './cluster-acl.js';
import { MirroredKind } from './cluster-mirror.js';
import { ClusterTokens, type TokenRecords } from './cluster-tokens.js';
import { USER_PREFIX, userRows } from './cluster-users.js';

/** How often users.db is read for the CLI's changes. */
const USERS_POLL_MS = 250;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class ClusterAccess {
  private readonly acl: SqliteAclStore;
  private readonly userDb: SqliteUserStore;
  private roles: MirroredKind | null = null;
  private bindings: MirroredKind | null = null;
  private userKind: MirroredKind | null = null;
  private tokens: ClusterTokens | null = null;
  private policy: PolicyService | null = null;
  private timer: NodeJS.Timeout | null = null;
  private offPolicy: () => void = () => {};

  constructor(
    dataDir: string,
    private readonly logger: Logger,
  ) {
    this.acl = SqliteAclStore.open(join(dataDir, ACL_STORE_FILE));
    this.userDb = new SqliteUserStore(join(dataDir, USERS_DB_FILE));
  }

  /** Before the shared state's start: its kinds. */
  register(state: SharedState): void {
    const reload = (): void => {
      if (this.policy === null) return;
      this.policy.reload();
      this.logger.info({ roles: this.policy.current().roles.length, bindings: this.policy.current().bindings.length }, 'ACL rules changed by another node of the cluster');
    };
    this.roles = new MirroredKind(state, 'an ACL role', roleRows(this.acl), this.logger, reload);
    this.bindings = new MirroredKind(state, 'an ACL binding', bindingRows(this.acl), this.logger, reload);
    this.userKind = new MirroredKind(state, 'a user', userRows(this.userDb), this.logger);
    this.tokens = new ClusterTokens(state, this.logger);
    state.register(ROLE_PREFIX, this.roles);
    state.register(BINDING_PREFIX, this.bindings);
    state.register(USER_PREFIX, this.userKind);
    this.tokens.register();
  }

  /** After the shared state was read: the files take the cluster's rows, and this node's changes go out from now on. */
  attach(policy: PolicyService): void {
    const { roles, bindings, userKind } = this.kinds();
    this.policy = policy;
    roles.attach();
    bindings.attach();
    userKind.attach();
    policy.reload();
    // Every change of the rules here (admin API, or the CLI's, which the service polls for) reloads it.
    this.offPolicy = policy.onChange(() => this.guard(() => {
      roles.sync();
      bindings.sync();
    }));
    this.timer = setInterval(() => this.guard(() => userKind.sync()), USERS_POLL_MS);
    this.timer.unref();
  }

  /** The admin API's user store: users.db, whose changes go to the cluster at once. */
  users(): UserAdmin {
    const db = this.userDb;
    const sync = (): void => this.guard(() => this.userKind?.sync());
    return {
      find: (name: string): UserRecord | null => db.find(name),
      list: (): UserRecord[] => db.list(),
      put: (user: UserRecord): void => {
        db.put(user);
        sync();
      },
      delete: (name: string): boolean => {
        const existed = db.delete(name);
        sync();
        return existed;
      },
    };
  }

  /** The admin API's token store: the cluster's tokens and admin.db's (cluster-tokens.ts). */
  tokenStore(local: TokenStore & TokenRecords): TokenStore {
    if (this.tokens === null) throw new Error('cluster access asked for tokens before it was registered');
    this.tokens.attach(local);
    return this.tokens;
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.offPolicy();
    this.tokens?.stop();
    this.acl.close();
    this.userDb.close();
  }

  private kinds(): { roles: MirroredKind; bindings: MirroredKind; userKind: MirroredKind } {
    if (this.roles === null || this.bindings === null || this.userKind === null) throw new Error('cluster access attached before it was registered');
    return { roles: this.roles, bindings: this.bindings, userKind: this.userKind };
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logger.error({ err: errText(err) }, 'cannot send this node\'s ACL or user changes to the cluster; retrying on the next change');
    }
  }
}
