/**
 * Builds authentication from the config: the per-listener provider chains, the user store
 * (when a listener takes passwords or SCRAM), the JWT verifier (its key file is read here)
 * and the enhanced methods `SCRAM-SHA-256` and `JWT`. Owns: the wiring and the files.
 * Must not: decide who is admitted (security/authn does).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Authenticator, EnhancedAuthMethod } from '../broker/ports.js';
import type { AuthProviderName } from '../core/auth-config.js';
import type { BastionConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ChainAuthenticator, type ListenerChain } from '../security/authn/chain.js';
import { JwtMethod, JwtProvider } from '../security/authn/jwt-provider.js';
import { JwtVerifier, type JwtKeyMaterial } from '../security/authn/jwt-verifier.js';
import { PasswordHasher } from '../security/authn/password-hash.js';
import { PasswordProvider } from '../security/authn/password-provider.js';
import type { AuthProvider } from '../security/authn/provider.js';
import { ScramSha256Method } from '../security/authn/scram-method.js';
import { CertificateProvider, PskProvider } from '../security/authn/transport-providers.js';
import { SqliteUserStore, USERS_DB_FILE } from '../store/sqlite/user-store.js';

export interface AuthnRuntime {
  authenticator: Authenticator;
  enhancedAuth: EnhancedAuthMethod[];
  /** The user store the providers read, when a listener uses password or SCRAM (shared with the admin API). */
  users: SqliteUserStore | null;
  close(): void;
}

export interface AuthnRuntimeOptions {
  /** Tests pass a counting wrapper around the real scrypt. */
  hasher?: PasswordHasher;
  /** The `provision-token` provider (provisioning/token-provider.ts), when a listener names it. */
  provisionTokens?: AuthProvider;
}

function keyMaterial(jwt: NonNullable<BastionConfig['authn']['jwt']>, resolvePath: (p: string) => string): JwtKeyMaterial {
  if (jwt.jwksUrl !== undefined) return { kind: 'jwks', url: jwt.jwksUrl };
  const file = resolvePath((jwt.publicKeyFile ?? jwt.secretFile)!);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read the JWT key file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (jwt.secretFile !== undefined) {
    // SECURITY: a short HMAC secret can be brute-forced from one token.
    if (bytes.length < 32) throw new ConfigError(`the JWT secret in ${file} is shorter than 32 bytes`);
    return { kind: 'secret', bytes };
  }
  return { kind: 'public', text: bytes.toString('utf8') };
}

export function buildAuthn(config: BastionConfig, dataDir: string, resolvePath: (p: string) => string, logger: Logger, opts: AuthnRuntimeOptions = {}): AuthnRuntime {
  const uses = (name: AuthProviderName): boolean => config.listeners.some((l) => l.auth?.providers.includes(name) === true);
  const users = uses('password') || uses('scram') ? new SqliteUserStore(join(dataDir, USERS_DB_FILE)) : null;
  let verifier: JwtVerifier | null = null;
  if (config.authn.jwt !== undefined) {
    try {
      verifier = new JwtVerifier(config.authn.jwt, keyMaterial(config.authn.jwt, resolvePath));
    } catch (err) {
      users?.close();
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`the JWT key is not usable: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const hasher = opts.hasher ?? new PasswordHasher();
  const provider = (name: AuthProviderName): AuthProvider | null => {
    switch (name) {
      case 'certificate':
        return new CertificateProvider();
      case 'psk':
        return new PskProvider();
      case 'password':
        return new PasswordProvider(users!, hasher);
      case 'jwt':
        return new JwtProvider(verifier!);
      case 'scram':
        return null; // an enhanced method only (MQTT 5 AUTH), offered through gate() below
      case 'provision-token':
        if (opts.provisionTokens === undefined) throw new ConfigError('the provision-token provider needs the provisioning records (internal wiring)');
        return opts.provisionTokens;
      default: {
        const unreachable: never = name;
        return unreachable;
      }
    }
  };
  const chains = new Map<string, ListenerChain>();
  for (const l of config.listeners) {
    if (l.auth === undefined) continue;
    const providers = l.auth.providers.map(provider).filter((p): p is AuthProvider => p !== null);
    chains.set(l.name, { names: l.auth.providers, providers, requireCertificate: l.auth.requireCertificate });
  }
  const chain = new ChainAuthenticator(chains, logger);
  const enhancedAuth: EnhancedAuthMethod[] = [];
  if (users !== null && uses('scram')) enhancedAuth.push(chain.gate(new ScramSha256Method(users, { iterations: config.authn.scramIterations }), 'scram'));
  if (verifier !== null && uses('jwt')) enhancedAuth.push(chain.gate(new JwtMethod(verifier), 'jwt'));
  return { authenticator: chain, enhancedAuth, users, close: () => users?.close() };
}
