/**
 * Provisioning records as operators see them (`bastion provision … --json` and the admin
 * API): claims, one-time tokens and provisioned devices, each with its status in words.
 * Owns: those views and the statuses. Must not: read a store or print.
 *
 * SECURITY: a token's view never carries its secret or its hash.
 */
import type { ClaimRecord, DeviceRecord, TokenRecord } from './ports.js';

type StoredToken = TokenRecord & { revokedAt: number | null };

const iso = (ms: number): string => new Date(ms).toISOString();

export function tokenStatus(t: StoredToken, now: number): 'used' | 'revoked' | 'expired' | 'unused' {
  if (t.usedAt !== null) return 'used';
  if (t.revokedAt !== null) return 'revoked';
  if (t.expiresAt <= now) return 'expired';
  return 'unused';
}

export function tokenJson(t: StoredToken, now: number): Record<string, unknown> {
  return {
    id: t.id,
    template: t.template,
    status: tokenStatus(t, now),
    createdAt: iso(t.createdAt),
    expiresAt: iso(t.expiresAt),
    usedAt: t.usedAt === null ? null : iso(t.usedAt),
    usedBy: t.usedBy,
    revokedAt: t.revokedAt === null ? null : iso(t.revokedAt),
  };
}

export function deviceJson(d: DeviceRecord): Record<string, unknown> {
  return {
    identity: d.identity,
    template: d.template,
    certSerial: d.certSerial,
    notAfter: iso(d.notAfter),
    via: d.claim.kind === 'claim' ? { claim: d.claim.serialNumber } : { token: d.claim.id },
    createdAt: iso(d.createdAt),
  };
}

export function claimStatus(c: ClaimRecord, now: number): 'revoked' | 'expired' | 'exhausted' | 'active' {
  if (c.revokedAt !== null) return 'revoked';
  if (c.expiresAt <= now) return 'expired';
  if (c.maxDevices > 0 && c.devices >= c.maxDevices) return 'exhausted';
  return 'active';
}

export function claimJson(c: ClaimRecord, now: number): Record<string, unknown> {
  return {
    serialNumber: c.serialNumber,
    template: c.template,
    status: claimStatus(c, now),
    devices: c.devices,
    maxDevices: c.maxDevices,
    createdAt: iso(c.createdAt),
    expiresAt: iso(c.expiresAt),
    revokedAt: c.revokedAt === null ? null : iso(c.revokedAt),
  };
}
