/**
 * What device provisioning (issue 13) needs from the rest of Bastion, as ports: the CA that
 * signs device certificates, the records of claims, tokens and devices, and the ACL it
 * binds identities into. Owns: those contracts. Must not: do I/O (adapters in store/ and
 * server/ do).
 */

/** A certificate the CA signed for a device: leaf first, then the chain up to the root. */
export interface SignedDeviceCertificate {
  serialNumber: string;
  certPem: string;
  notAfter: Date;
  fingerprint256: string;
}

export interface DeviceCertificateRequest {
  csrPem: string;
  /** The identity the certificate carries, whatever the CSR asked for. */
  commonName: string;
  organizationalUnit?: string;
  /** `dns:…`, `uri:…`, `email:…`, `ip:…` (already expanded from the template). */
  sans: string[];
  days: number;
}

/** The built-in PKI as provisioning uses it (server/ adapts PkiService). */
export interface DeviceCertificateAuthority {
  /** Signs the CSR's key under the client profile with the given identity; recorded in the inventory. */
  sign(req: DeviceCertificateRequest): Promise<SignedDeviceCertificate>;
  /** Revokes (CRL re-signed at once); unknown or already revoked serials are not an error. */
  revoke(serialNumber: string, reason: 'superseded' | 'cessationOfOperation' | 'keyCompromise'): Promise<void>;
  /** The PEM chain (issuing CA first) a device needs to verify the broker and its certificates. */
  caChainPem(): Promise<string>;
}

/** Where binding an identity to roles goes (the ACL's run-time bindings). */
export interface RoleBinder {
  bind(identity: string, roles: readonly string[]): void;
  /** The roles of `roles` the ACL does not define (a template naming one cannot bind its devices). */
  missing(roles: readonly string[]): string[];
}

/** A claim certificate: a shared factory credential for one template. */
export interface ClaimRecord {
  serialNumber: string;
  template: string;
  /** 0: no limit. */
  maxDevices: number;
  devices: number;
  expiresAt: number;
  revokedAt: number | null;
  createdAt: number;
}

/** A one-time provisioning token (only its SHA-256 is stored). */
export interface TokenRecord {
  id: string;
  template: string;
  expiresAt: number;
  usedAt: number | null;
  usedBy: string | null;
  createdAt: number;
}

/** Who is provisioning: a claim certificate (by serial) or a one-time token (by id). */
export type ClaimRef = { kind: 'claim'; serialNumber: string } | { kind: 'token'; id: string };

/** A step-1 certificate's ownership token (only its SHA-256 is stored). */
export interface OwnershipRecord {
  certSerial: string;
  /** The CSR of step 1: step 2 certifies the same key under the template's identity. */
  csrPem: string;
  claim: ClaimRef;
  expiresAt: number;
  usedAt: number | null;
}

export interface DeviceRecord {
  identity: string;
  template: string;
  certSerial: string;
  notAfter: number;
  claim: ClaimRef;
  createdAt: number;
}

/** A renewal: `newSerial` replaces `oldSerial` once first used, or at `supersedeAt`. */
export interface RenewalRecord {
  identity: string;
  oldSerial: string;
  newSerial: string;
  createdAt: number;
  supersedeAt: number;
  supersededAt: number | null;
}

/** The records of provisioning (SQLite: provisioning/sqlite-provisioning-store.ts). */
export interface ProvisioningStore {
  addClaim(claim: Omit<ClaimRecord, 'devices' | 'revokedAt'>): void;
  claim(serialNumber: string): ClaimRecord | null;
  listClaims(): ClaimRecord[];
  revokeClaim(serialNumber: string, at: number): boolean;
  /** Counts one device against the claim; false when it is at its limit (atomic; in a cluster, across the nodes). */
  takeClaimSlot(serialNumber: string): boolean | Promise<boolean>;

  /** Stores a token by the SHA-256 of its secret. */
  addToken(token: Omit<TokenRecord, 'usedAt' | 'usedBy'>, secretHash: string): void;
  /** The token whose secret hashes to `secretHash`, or null. */
  tokenByHash(secretHash: string): TokenRecord | null;
  token(id: string): TokenRecord | null;
  listTokens(): TokenRecord[];
  /** Marks the token used by `identity`; false when it was used already (atomic: a token works once). */
  spendToken(id: string, identity: string, at: number): boolean | Promise<boolean>;
  revokeToken(id: string, at: number): boolean;

  addOwnership(secretHash: string, record: Omit<OwnershipRecord, 'usedAt'>): void;
  ownership(secretHash: string): OwnershipRecord | null;
  /** Marks it used; false when it was used already (atomic). */
  spendOwnership(secretHash: string, at: number): boolean | Promise<boolean>;
  /** Unused ownership records past their expiry (their step-1 certificates are revoked). */
  expiredOwnerships(now: number): Array<OwnershipRecord & { secretHash: string }>;
  forgetOwnership(secretHash: string): void;

  putDevice(device: DeviceRecord): void;
  device(identity: string): DeviceRecord | null;
  deviceBySerial(serialNumber: string): DeviceRecord | null;
  listDevices(): DeviceRecord[];

  addRenewal(renewal: Omit<RenewalRecord, 'supersededAt'>): void;
  renewalByNewSerial(newSerial: string): RenewalRecord | null;
  /** Renewals whose old certificate is still to be revoked and is due (`supersedeAt <= now`). */
  dueRenewals(now: number): RenewalRecord[];
  markSuperseded(newSerial: string, at: number): void;
  /** How many renewals `identity` made since `since`. */
  renewalsSince(identity: string, since: number): number;

  close(): void;
}
