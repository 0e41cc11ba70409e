/**
 * The authentication parts of the config schema: a listener's provider chain
 * (`listeners[].auth`) and the provider settings shared by all listeners (`authn`).
 * Owns: what a valid authentication config is. Must not: read key files or build providers
 * (server/ does).
 *
 * SECURITY: passwords and tokens on a plaintext listener need a second written opt-in
 * (`passwordsInCleartext: true`) beyond the `insecure: true` every plaintext listener needs;
 * JWT algorithms come from an allow-list without `none`, and HMAC only with a secret.
 */
import { z } from 'zod';

/** `provision-token`: a one-time device provisioning token as password, user name `$provision` (issue 13). */
export const AUTH_PROVIDERS = ['certificate', 'psk', 'password', 'jwt', 'scram', 'provision-token'] as const;
export type AuthProviderName = (typeof AUTH_PROVIDERS)[number];

/** Providers that take a secret from the client (a password, a token, a SCRAM proof): the second factor with requireCertificate. */
export const CREDENTIAL_PROVIDERS: ReadonlySet<string> = new Set<AuthProviderName>(['password', 'jwt', 'scram', 'provision-token']);

export const listenerAuthSchema = z
  .object({
    /** Tried in order; the first that claims the client decides. Empty: nobody is admitted. */
    providers: z.array(z.enum(AUTH_PROVIDERS)),
    /** SECURITY: when true, a verified client certificate AND a password/JWT/SCRAM login are both needed. */
    requireCertificate: z.boolean().default(false),
  })
  .strict();

export type ListenerAuthConfig = z.infer<typeof listenerAuthSchema>;

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
const HMAC_ALGS = ['HS256', 'HS384', 'HS512'] as const;

const jwtSchema = z
  .object({
    /** Exactly one key source: a JWKS URL, a public key file (PEM or JWK), or a shared secret file. */
    jwksUrl: z.url({ protocol: /^https?$/ }).optional(),
    publicKeyFile: z.string().min(1).optional(),
    secretFile: z.string().min(1).optional(),
    issuer: z.string().min(1),
    audience: z.string().min(1),
    algorithms: z.array(z.enum([...ASYMMETRIC_ALGS, ...HMAC_ALGS])).min(1).default(['RS256', 'PS256', 'ES256', 'EdDSA']),
    /** A claim that must equal the MQTT client id (refused with 0x85 otherwise). */
    clientIdClaim: z.string().min(1).optional(),
    /** The claim that names the user (ClientIdentity.username). */
    usernameClaim: z.string().min(1).default('sub'),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(0),
    /** JWKS: how long a fetched key set is trusted, and the least time between two fetches. */
    jwksCacheMaxAgeSeconds: z.number().min(0).default(600),
    jwksCooldownSeconds: z.number().min(0).default(30),
  })
  .strict()
  .superRefine((j, ctx) => {
    const sources = [j.jwksUrl, j.publicKeyFile, j.secretFile].filter((s) => s !== undefined).length;
    if (sources !== 1) ctx.addIssue({ code: 'custom', path: [], message: 'exactly one of jwksUrl, publicKeyFile or secretFile is needed' });
    const hmac = j.algorithms.filter((a) => (HMAC_ALGS as readonly string[]).includes(a));
    if (j.secretFile === undefined && hmac.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: `${hmac[0]} needs secretFile (HMAC algorithms are never verified with a public key)` });
    }
    if (j.secretFile !== undefined && hmac.length !== j.algorithms.length) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'with secretFile only HS256, HS384 or HS512 apply' });
    }
  });

export type JwtConfig = z.infer<typeof jwtSchema>;

export const authnSchema = z
  .object({
    jwt: jwtSchema.optional(),
    /** PBKDF2 iterations for the SCRAM keys stored with each user (RFC 7677 asks for at least 4096). */
    scramIterations: z.number().int().min(4096).max(1_000_000).default(4096),
  })
  .strict()
  .default({ scramIterations: 4096 });

export type AuthnConfig = z.infer<typeof authnSchema>;

interface ListenerShape {
  protocol: string;
  tls?: unknown;
  psk?: unknown;
  auth?: ListenerAuthConfig | undefined;
  passwordsInCleartext: boolean;
}

type Issue = { path: Array<string | number>; message: string };

/** The rules of one listener's chain; each broken rule is one readable issue. */
export function listenerAuthIssues(l: ListenerShape): Issue[] {
  const issues: Issue[] = [];
  const plaintext = l.protocol === 'mqtt' || l.protocol === 'ws';
  const auth = l.auth;
  if (auth === undefined) {
    if (l.passwordsInCleartext) issues.push({ path: ['passwordsInCleartext'], message: 'passwordsInCleartext applies only with an auth chain that takes passwords' });
    return issues;
  }
  const credentials = auth.providers.filter((p) => CREDENTIAL_PROVIDERS.has(p));
  // SECURITY: a password or token sent in the clear is a password given away.
  if (plaintext && credentials.length > 0 && !l.passwordsInCleartext) {
    issues.push({ path: ['auth', 'providers'], message: `${credentials[0]} on a plaintext (protocol: ${l.protocol}) listener sends secrets in the clear; say passwordsInCleartext: true to accept that` });
  }
  if (plaintext && (auth.providers.includes('certificate') || auth.providers.includes('psk') || auth.requireCertificate)) {
    issues.push({ path: ['auth'], message: 'certificate, psk and requireCertificate need a TLS listener' });
  }
  if (auth.providers.includes('psk') && l.psk === undefined) issues.push({ path: ['auth', 'providers'], message: 'the psk provider needs the listener psk section' });
  if (auth.requireCertificate && credentials.length === 0) {
    issues.push({ path: ['auth', 'requireCertificate'], message: 'requireCertificate needs a password, jwt or scram provider as the second factor' });
  }
  if (new Set(auth.providers).size !== auth.providers.length) issues.push({ path: ['auth', 'providers'], message: 'a provider is listed twice' });
  return issues;
}

/** Providers the listeners use that need an `authn` section. */
export function authnIssues(listeners: ReadonlyArray<{ auth?: ListenerAuthConfig | undefined }>, authn: AuthnConfig): Issue[] {
  const usesJwt = listeners.some((l) => l.auth?.providers.includes('jwt') === true);
  return usesJwt && authn.jwt === undefined ? [{ path: ['authn', 'jwt'], message: 'a listener uses the jwt provider: authn.jwt (issuer, audience and a key) is needed' }] : [];
}
