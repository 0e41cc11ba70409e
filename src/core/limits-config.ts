/**
 * The `limits` section: protection against abuse, every limit on by default with a value
 * a production fleet will not hit by accident. Owns: what a valid limit setting is and its
 * defaults. Must not: enforce anything (security/limits and the transport do).
 *
 * SECURITY: `enabled: false` turns every limit in this section off at once (for a
 * side-by-side benchmark); it must be written, and the broker logs it at warn.
 */
import { z } from 'zod';

const rate = (perSecond: number, burst: number) =>
  z
    .object({
      /** Tokens per second; 0 turns this limit off. */
      perSecond: z.number().min(0).default(perSecond),
      /** The largest burst after idling (bucket capacity). */
      burst: z.number().min(1).default(burst),
    })
    .strict()
    .default({ perSecond, burst });

export const connectionLimitsSchema = z
  .object({
    /** Concurrent connections on the whole broker (all listeners). */
    maxTotal: z.number().int().min(1).default(100_000),
    /**
     * Concurrent connections from one source address. Generous because many devices can sit
     * behind one NAT address; 0 turns it off.
     */
    perIpMax: z.number().int().min(0).default(1000),
    /** New connections per second from one source address (token bucket), refused at accept. */
    perIpRate: rate(20, 100),
    /**
     * Addresses that carry many devices (a site's NAT gateway, a carrier's CGNAT range): their
     * own per-address limits, so the whole site reconnecting after a restart is not held to
     * one device's pace. The first entry whose range holds the address applies; the others
     * keep perIpMax and perIpRate.
     */
    gateways: z
      .array(
        z
          .object({
            /** CIDR ranges (IPv4/IPv6) or single addresses. */
            ranges: z.array(z.string().min(1)).min(1),
            /** Concurrent connections from one address in these ranges; 0 turns the cap off. */
            perIpMax: z.number().int().min(0),
            /** New connections per second from one address in these ranges. */
            perIpRate: z.object({ perSecond: z.number().min(0), burst: z.number().min(1) }).strict(),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

export const clientLimitsSchema = z
  .object({
    /** PUBLISH packets per second per client. */
    publishRate: rate(1000, 2000),
    /** PUBLISH payload+topic bytes per second per client. */
    bandwidth: rate(10 * 1024 * 1024, 20 * 1024 * 1024),
    /**
     * Over a rate: `drop` drops QoS 0 (counted) and answers QoS 1/2 with 0x97 Quota
     * Exceeded (v5; a v3.1.1 publisher is slowed instead: reading pauses until the bucket
     * refills, which loses nothing); `disconnect` closes the client (v5 0x96).
     */
    action: z.enum(['drop', 'disconnect']).default('drop'),
    /** Subscriptions one session may hold; more are refused with 0x97 (v3: 0x80). */
    maxSubscriptions: z.number().int().min(1).default(1000),
    /** Longest client id accepted; longer ones are refused with 0x85 (v3: 2). */
    maxClientIdLength: z.number().int().min(23).max(65535).default(256),
  })
  .strict();

export const authFailureLimitsSchema = z
  .object({
    /**
     * Failures from one source address, or for one user name tried, within `windowSeconds`
     * that start a ban (never by client id: anybody can type one). 0 turns it off.
     */
    maxFailures: z.number().int().min(0).default(10),
    windowSeconds: z.number().int().min(1).default(60),
    /** The first ban's length; each further ban of the same address or user name doubles it. */
    banSeconds: z.number().int().min(1).default(60),
    maxBanSeconds: z.number().int().min(1).default(86_400),
  })
  .strict();

export const flappingLimitsSchema = z
  .object({
    /** Connects of one client id (of one certificate, for certificate clients) within `windowSeconds` that count as flapping. 0 turns it off. */
    maxConnects: z.number().int().min(0).default(30),
    windowSeconds: z.number().int().min(1).default(60),
    banSeconds: z.number().int().min(1).default(300),
  })
  .strict();

export const slowClientLimitsSchema = z
  .object({
    /** Bytes waiting to be written to one client above which it is disconnected at once. */
    maxWriteBufferBytes: z.number().int().min(64 * 1024).default(8 * 1024 * 1024),
    /** Seconds a client may stay congested (not draining its socket) before it is disconnected. */
    maxCongestedSeconds: z.number().min(1).default(30),
  })
  .strict();

export const limitsSchema = z
  .object({
    enabled: z.boolean().default(true),
    connections: connectionLimitsSchema.default(connectionLimitsSchema.parse({})),
    client: clientLimitsSchema.default(clientLimitsSchema.parse({})),
    authFailures: authFailureLimitsSchema.default(authFailureLimitsSchema.parse({})),
    flapping: flappingLimitsSchema.default(flappingLimitsSchema.parse({})),
    slowClient: slowClientLimitsSchema.default(slowClientLimitsSchema.parse({})),
    /** Source ranges (CIDR, IPv4 and IPv6) allowed to connect; empty: all. Checked at accept. */
    ipAllow: z.array(z.string().min(1)).default([]),
    /** Source ranges refused at accept (before TLS). Deny beats allow. */
    ipDeny: z.array(z.string().min(1)).default([]),
  })
  .strict();

export type LimitsConfig = z.infer<typeof limitsSchema>;

/** The limits section with every default applied. */
export function defaultLimitsConfig(): LimitsConfig {
  return limitsSchema.parse({});
}
