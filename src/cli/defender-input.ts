/**
 * The security audit's input for `bastion defender audit`: built by
 * src/server/defender-audit-input.ts, which the running broker's scheduled audits share, so
 * the command and the broker audit the same things with the same thresholds (the config's
 * `defender.audit`). Owns: nothing of its own; kept so the CLI's imports stay where they were.
 * Must not: grow a second loader.
 */
export { DEBIAN_BLACKLIST_DIR, loadAuditInput, readDebianBlacklist, type AuditSourceOptions } from '../server/defender-audit-input.js';
