/**
 * The per-listener authentication chain: the listener's providers are asked in order and
 * the first that claims the client decides. Listeners without an `auth` section keep the
 * transport-identity behaviour (ListenerAuthenticator). Owns: ordering, the
 * certificate-and-login rule, and what "nobody claimed" means. Must not: verify
 * credentials itself (providers do).
 *
 * SECURITY (fail closed): an empty chain, a chain where nobody claims the client, and a
 * provider that throws all mean deny; the reason is returned (and logged by the channel).
 */
import type { AuthRequest, AuthResult, Authenticator, EnhancedAuthMethod, EnhancedAuthState, EnhancedAuthStep } from '../../broker/ports.js';
import { CREDENTIAL_PROVIDERS } from '../../core/auth-config.js';
import type { Logger } from '../../core/logger.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { ListenerAuthenticator } from './listener-authenticator.js';
import type { AuthProvider, ProviderVerdict } from './provider.js';
import { hasVerifiedCertificate } from './transport-providers.js';


export interface ListenerChain {
  /** Provider names as configured (enhanced methods such as scram are listed but not in `providers`). */
  names: readonly string[];
  providers: readonly AuthProvider[];
  requireCertificate: boolean;
}

export class ChainAuthenticator implements Authenticator {
  private readonly legacy = new ListenerAuthenticator();

  constructor(
    private readonly chains: ReadonlyMap<string, ListenerChain>,
    private readonly logger: Logger,
  ) {}

  authenticate(req: AuthRequest): AuthResult | Promise<AuthResult> {
    const chain = this.chains.get(req.identity.listener);
    if (chain === undefined) return this.legacy.authenticate(req);
    return this.run(chain, req);
  }

  private async run(chain: ListenerChain, req: AuthRequest): Promise<AuthResult> {
    if (chain.requireCertificate && !hasVerifiedCertificate(req.identity)) {
      return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'this listener requires a client certificate as well as a login', provider: 'certificate' };
    }
    // With requireCertificate the certificate is the first factor, already checked: only a
    // credential provider (password, jwt, scram) may admit (a certificate alone must not).
    const providers = chain.requireCertificate ? chain.providers.filter((p) => CREDENTIAL_PROVIDERS.has(p.name)) : chain.providers;
    for (const provider of providers) {
      let verdict: ProviderVerdict;
      try {
        verdict = await provider.authenticate(req);
      } catch (err) {
        this.logger.error({ provider: provider.name, clientId: req.clientId, listener: req.identity.listener, err: err instanceof Error ? err.message : String(err) }, 'authentication provider failed');
        return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: `authentication provider ${provider.name} failed`, provider: provider.name };
      }
      if (verdict.kind === 'not-mine') continue;
      if (verdict.kind === 'deny') return { ok: false, reasonCode: verdict.reasonCode, reason: verdict.reason, provider: provider.name };
      const { kind: _allow, ...admitted } = verdict;
      return { ok: true, ...admitted };
    }
    const presented = req.username !== undefined || req.password !== undefined;
    // SECURITY: credentials nobody accepted never fall through to anonymous access.
    if (req.allowAnonymous && !presented && !chain.requireCertificate) return { ok: true, principal: null, method: 'anonymous' };
    if (chain.requireCertificate) return { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'this listener requires a login as well as the client certificate', provider: 'chain' };
    if (presented) return { ok: false, reasonCode: ReasonCode.BadUserNameOrPassword, reason: 'no authentication provider on this listener accepts these credentials', provider: 'chain' };
    return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'no authentication provider on this listener admits this client', provider: 'chain' };
  }

  /**
   * Offers an enhanced method only on listeners whose chain lists `provider`, with the
   * listener's certificate rule. SECURITY: a listener without the provider answers 0x8C.
   */
  gate(method: EnhancedAuthMethod, provider: string): EnhancedAuthMethod {
    const chains = this.chains;
    // A failure names the provider that refused (audit, metrics); only failures pay for a copy.
    const tag = (step: EnhancedAuthStep): EnhancedAuthStep => (step.kind === 'failure' && step.provider === undefined ? { ...step, provider } : step);
    return {
      name: method.name,
      step(state: EnhancedAuthState, data: Buffer | undefined): EnhancedAuthStep | Promise<EnhancedAuthStep> {
        const chain = chains.get(state.identity.listener);
        if (chain === undefined || !chain.names.includes(provider)) {
          return { kind: 'failure', reasonCode: ReasonCode.BadAuthenticationMethod, reason: `authentication method ${method.name} is not enabled on this listener`, provider };
        }
        if (chain.requireCertificate && state.identity.certificate === undefined) {
          return { kind: 'failure', reasonCode: ReasonCode.NotAuthorized, reason: 'this listener requires a client certificate as well as a login', provider: 'certificate' };
        }
        const step = method.step(state, data);
        return step instanceof Promise ? step.then(tag) : tag(step);
      },
    };
  }
}
