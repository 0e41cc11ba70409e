/**
 * The `admin` section: the HTTPS admin API listener. Owns: what a valid admin setting is
 * and its secure defaults. Must not: read files (server/ and admin/ do).
 *
 * SECURITY: the admin API is off unless this section is present; it is HTTPS only (there
 * is no plaintext option), binds to loopback unless told otherwise, and needs at least one
 * way to authenticate an operator (client certificates or bearer tokens).
 */
import { z } from 'zod';
import { groupList, tlsSettingIssues } from './tls-config.js';

export const adminTlsSchema = z
  .object({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** Trust anchors for operator client certificates. */
    ca: z.string().min(1).optional(),
    /** PEM file with CRLs: a revoked operator certificate is refused. */
    crl: z.string().min(1).optional(),
    /** As on a listener: `auto` uses the built-in PKI's CRLs when `ca` is that PKI's; `none` opts out. */
    revocation: z.enum(['auto', 'none']).default('auto'),
    /** `optional` lets token holders in without a certificate; `required` refuses them at the handshake. */
    clientCerts: z.enum(['required', 'optional', 'none']).default('optional'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /** Key-exchange groups, as on a listener: hybrid post-quantum X25519MLKEM768 first by default. */
    groups: groupList.optional(),
    /** SECURITY: refuse operators whose TLS client cannot negotiate a hybrid post-quantum group (needs TLSv1.3). */
    requirePostQuantum: z.boolean().default(false),
  })
  .strict()
  .superRefine((t, ctx) => {
    for (const issue of tlsSettingIssues(t)) ctx.addIssue({ code: 'custom', ...issue });
  });

export const adminSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535),
    tls: adminTlsSchema,
    /** Accept bearer tokens made with `bastion admin token create` (stored hashed in the data dir). */
    tokens: z.boolean().default(true),
    /** The certificate OU that makes an operator (the admin scope: reads and changes). */
    operatorOu: z.string().min(1).default('operators'),
    /** A certificate OU that makes a read-only operator (the viewer scope); absent: none. */
    viewerOu: z.string().min(1).optional(),
    /** Serve the web console at /console/ (sign-in with a token or an operator certificate). */
    console: z.boolean().default(true),
    /** Largest request body, bytes; larger ones are answered 413. */
    maxBodyBytes: z.number().int().min(1024).max(1048576).default(65536),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.viewerOu !== undefined && a.viewerOu === a.operatorOu) {
      ctx.addIssue({ code: 'custom', path: ['viewerOu'], message: 'viewerOu must differ from operatorOu' });
    }
    if (a.tls.clientCerts !== 'none' && a.tls.ca === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls', 'ca'], message: 'operator client certificates need tls.ca (the trust anchors)' });
    }
    // SECURITY: fail closed at start rather than run an API nobody can authenticate to.
    if (a.tls.clientCerts === 'none' && !a.tokens) {
      ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'with tls.clientCerts none and tokens false no operator could authenticate' });
    }
    if (a.tls.clientCerts === 'required' && a.tokens) {
      ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'tokens need tls.clientCerts optional or none (a required certificate refuses token clients at the handshake)' });
    }
  });

export type AdminConfig = z.infer<typeof adminSchema>;
