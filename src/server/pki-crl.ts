/**
 * The CRL file (`pki/crl.pem`) and its renewal. Owns: which CRLs the file holds, their
 * lifetimes, when they are due, and writing the file atomically.
 * Must not: decide revocations (the inventory holds them) or load keys itself
 * (pki-ca-store does).
 *
 * Why two CRLs: Node's TLS layer, given `crl`, checks revocation for the WHOLE chain
 * (OpenSSL X509_V_FLAG_CRL_CHECK_ALL), so every CA certificate in a client's chain needs a
 * CRL from its issuer. With an intermediate, `crl.pem` holds the intermediate-signed CRL
 * (leaf revocations, short-lived, re-signed whenever it changes) followed by the
 * root-signed CRL (revoked intermediates, long-lived, because the root key may be offline
 * and the last root CRL must outlast it). Without an intermediate the root issues leaves
 * and its CRL is the short-lived one.
 */
import { BastionError } from '../core/errors.js';
import { createCrl, describeCertificate, type CaMaterial, type RevocationReason } from '../pki/index.js';
import type { PkiInventory } from '../store/sqlite/pki-inventory.js';
import { hasIntermediate, loadIntermediate, loadRoot, readText, rootKeyEncrypted, rootKeyOnline, type RootKeyAccess } from './pki-ca-store.js';
import { CERT_MODE, isRegularFile, writeFileAtomic } from './pki-files.js';
import type { PkiLayout } from './pki-layout.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Lifetime of the CRL of the CA that issues leaves (re-signed on every revocation). */
export const ISSUING_CRL_DAYS = 7;
/** Lifetime of the root-signed CRL above an intermediate (the root key may be offline). */
export const ROOT_CRL_DAYS = 180;

const CRL_NUMBER = 'crl.number';
const ROOT_CRL_PEM = 'crl.root.pem';
const ROOT_CRL_THIS = 'crl.root.thisUpdate';
const ROOT_CRL_NEXT = 'crl.root.nextUpdate';
const ISSUING_CRL_THIS = 'crl.issuing.thisUpdate';
const ISSUING_CRL_NEXT = 'crl.issuing.nextUpdate';

export interface CrlContext {
  readonly layout: PkiLayout;
  readonly inventory: PkiInventory;
  readonly access: RootKeyAccess;
}

/**
 * What to do with the root-signed CRL above an intermediate:
 * `required`: re-sign it now (an intermediate was revoked) or fail;
 * `when-online`: re-sign it if the root key is at hand, else keep the last one;
 * `if-due`: re-sign only past half its lifetime (renewal), else keep the last one.
 */
export type RootCrlPolicy = 'required' | 'when-online' | 'if-due';

export interface CrlWriteResult {
  readonly path: string;
  readonly pem: string;
  readonly rootCrlRenewed: boolean;
  /** Conditions an operator must act on (root CRL due while the root key is offline). */
  readonly problems: string[];
}

/** Past half its lifetime (or no record of it): time to re-sign. */
function isDue(inventory: PkiInventory, thisKey: string, nextKey: string, now: Date): boolean {
  const thisUpdate = inventory.getSetting(thisKey);
  const nextUpdate = inventory.getSetting(nextKey);
  if (thisUpdate === undefined || nextUpdate === undefined) return true;
  const start = Number(thisUpdate);
  const end = Number(nextUpdate);
  return now.getTime() >= start + (end - start) / 2;
}

async function signCrl(ctx: CrlContext, ca: CaMaterial, days: number, now: Date): Promise<{ pem: string; nextUpdate: Date }> {
  const issuerSerial = describeCertificate(ca.certPem).serialNumber;
  // An entry leaves the CRL once its certificate expired more than one CRL lifetime ago: by
  // then a CRL issued after its expiry listed it (RFC 5280 §3.3), and the CRL every
  // listener loads does not grow with every certificate ever revoked (renewals revoke one
  // per device per period).
  const entries = ctx.inventory.revokedIssuedBy(issuerSerial, new Date(now.getTime() - days * DAY_MS)).map((e) => ({
    serialNumber: e.serialNumber,
    revokedAt: e.revokedAt,
    ...(e.reason !== null ? { reason: e.reason as RevocationReason } : {}),
  }));
  const nextUpdate = new Date(now.getTime() + days * DAY_MS);
  const crlNumber = ctx.inventory.nextCounter(CRL_NUMBER);
  const pem = await createCrl({ ca, entries, crlNumber, thisUpdate: now, nextUpdate });
  return { pem, nextUpdate };
}

/** Whether the root key can sign without asking: present, and decryptable with what we have. */
async function rootUsable(ctx: CrlContext): Promise<boolean> {
  if (!(await rootKeyOnline(ctx.layout, ctx.access))) return false;
  if (ctx.access.keyFile === undefined && ctx.access.passphrase === undefined && (await rootKeyEncrypted(ctx.layout))) return false;
  return true;
}

/** The root-signed CRL to publish above the intermediate, re-signed according to `policy`. */
async function rootCrlAboveIntermediate(ctx: CrlContext, policy: RootCrlPolicy, now: Date): Promise<{ pem: string; renewed: boolean; problems: string[] }> {
  const { inventory } = ctx;
  const stored = inventory.getSetting(ROOT_CRL_PEM);
  const due = isDue(inventory, ROOT_CRL_THIS, ROOT_CRL_NEXT, now);
  const wanted = policy === 'required' || stored === undefined || due || policy === 'when-online';
  const usable = wanted && (policy === 'required' || (await rootUsable(ctx)));
  if (wanted && (usable || stored === undefined)) {
    const root = await loadRoot(ctx.layout, ctx.access, 'signing the root CRL');
    const signed = await signCrl(ctx, root, ROOT_CRL_DAYS, now);
    inventory.setSetting(ROOT_CRL_PEM, signed.pem);
    inventory.setSetting(ROOT_CRL_THIS, String(now.getTime()));
    inventory.setSetting(ROOT_CRL_NEXT, String(signed.nextUpdate.getTime()));
    return { pem: signed.pem, renewed: true, problems: [] };
  }
  const problems: string[] = [];
  if (due) {
    const next = new Date(Number(inventory.getSetting(ROOT_CRL_NEXT)));
    problems.push(
      `the root-signed CRL is past half its lifetime and expires at ${next.toISOString()}, but the root key is offline or locked: ` +
        'run `bastion crl --root-key FILE` (or with the passphrase) before then, or every client certificate will be refused',
    );
  }
  return { pem: stored!, renewed: false, problems };
}

/**
 * Re-signs the issuing CA's CRL from the inventory, adds the root CRL above an
 * intermediate according to `rootPolicy`, and replaces `crl.pem` atomically.
 *
 * Known limit: two processes re-signing at once are not serialised; the one that read the
 * inventory first may rename last, leaving a file without the other's revocation until the
 * next re-sign (not reproduced in-process: 15 rounds of 4 concurrent revocations lost none).
 * In a cluster, server/cluster-pki.ts re-checks the file against the inventory.
 */
export async function regenerateCrl(ctx: CrlContext, now: Date, rootPolicy: RootCrlPolicy): Promise<CrlWriteResult> {
  const { layout, inventory } = ctx;
  let pem: string;
  let rootCrlRenewed = false;
  let problems: string[] = [];
  if (await hasIntermediate(layout)) {
    const issuing = await signCrl(ctx, await loadIntermediate(layout), ISSUING_CRL_DAYS, now);
    const root = await rootCrlAboveIntermediate(ctx, rootPolicy, now);
    pem = issuing.pem + root.pem;
    rootCrlRenewed = root.renewed;
    problems = root.problems;
    inventory.setSetting(ISSUING_CRL_NEXT, String(issuing.nextUpdate.getTime()));
  } else {
    const root = await loadRoot(layout, ctx.access, 'signing the CRL');
    const issuing = await signCrl(ctx, root, ISSUING_CRL_DAYS, now);
    pem = issuing.pem;
    rootCrlRenewed = true;
    inventory.setSetting(ISSUING_CRL_NEXT, String(issuing.nextUpdate.getTime()));
  }
  inventory.setSetting(ISSUING_CRL_THIS, String(now.getTime()));
  await writeFileAtomic(layout.crl, pem, CERT_MODE);
  return { path: layout.crl, pem, rootCrlRenewed, problems };
}

export interface CrlRenewal {
  readonly renewed: boolean;
  readonly problems: string[];
}

/**
 * Re-signs what is past half its lifetime. The issuing CRL is always renewable (the
 * intermediate key lives here); a due root CRL with the root key offline is reported as
 * a problem while the last root CRL stays in the file.
 */
export async function renewCrlIfDue(ctx: CrlContext, now: Date): Promise<CrlRenewal> {
  const { layout, inventory } = ctx;
  const fileMissing = !(await isRegularFile(layout.crl));
  const issuingDue = isDue(inventory, ISSUING_CRL_THIS, ISSUING_CRL_NEXT, now);
  const intermediate = await hasIntermediate(layout);
  const rootDue = intermediate && isDue(inventory, ROOT_CRL_THIS, ROOT_CRL_NEXT, now);
  if (!fileMissing && !issuingDue && !rootDue) return { renewed: false, problems: [] };
  if (!fileMissing && !issuingDue && rootDue && !(await rootUsable(ctx))) {
    const next = inventory.getSetting(ROOT_CRL_NEXT);
    return {
      renewed: false,
      problems: [
        `the root-signed CRL expires at ${next === undefined ? 'an unknown time' : new Date(Number(next)).toISOString()} and the root key is offline or locked: ` +
          'run `bastion crl --root-key FILE` before then',
      ],
    };
  }
  const result = await regenerateCrl(ctx, now, 'if-due');
  return { renewed: true, problems: result.problems };
}

/** The current `crl.pem`, or ERR_PKI_NO_CRL. */
export async function readCrlFile(layout: PkiLayout): Promise<string> {
  if (!(await isRegularFile(layout.crl))) throw new BastionError('ERR_PKI_NO_CRL', `no CRL at ${layout.crl}; run \`bastion crl\``);
  return readText(layout.crl);
}
