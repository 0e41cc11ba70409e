/**
 * The configuration schema with the secure defaults. Owns: what a valid config is and
 * what an omitted key means. Must not: read files (server/ does).
 *
 * SECURITY: every default is the secure one. A plaintext listener needs `insecure: true`
 * in writing; anonymous access needs `allowAnonymous: true` in writing.
 */
import { z } from 'zod';
import { provisioningSchema } from './provisioning-config.js';
import { identityMappingSchema, pskSchema, tlsSchema } from './tls-config.js';
import { authzSchema } from './authz-config.js';
import { authnIssues, authnSchema, listenerAuthIssues, listenerAuthSchema } from './auth-config.js';
import { adminSchema } from './admin-config.js';
import { defaultLimitsConfig, limitsSchema } from './limits-config.js';
import { auditSchema } from './audit-config.js';
import { clusterSchema } from './cluster-config.js';
import { defenderSchema } from './defender-config.js';
import { otaSchema } from './ota-config.js';

const listenerSchema = z
  .object({
    name: z.string().min(1),
    protocol: z.enum(['mqtt', 'mqtts', 'ws', 'wss']),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535),
    tls: tlsSchema.optional(),
    /** TLS listeners: which part of a client certificate is the identity (default the CN). */
    identity: identityMappingSchema.default('cn'),
    /** SECURITY: when true, a client must use its certificate or PSK identity as its client id. */
    clientIdMustMatch: z.boolean().default(false),
    /** TLS-PSK identities and keys for this listener. */
    psk: pskSchema.optional(),
    insecure: z.boolean().default(false),
    /** ws/wss only: the HTTP path of the WebSocket endpoint (default DEFAULT_WS_PATH). */
    path: z.string().regex(/^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/, 'must start with / and hold only printable ASCII, without spaces, ? or #').optional(),
    allowAnonymous: z.boolean().default(false),
    /** The authentication chain (see auth-config.ts); absent: certificate/PSK identity, or anonymous when allowed. */
    auth: listenerAuthSchema.optional(),
    /** SECURITY: a plaintext listener may take passwords or tokens only with this second opt-in. */
    passwordsInCleartext: z.boolean().default(false),
    /** Concurrent connections on this listener (refused at accept); absent: only the global limit. */
    maxConnections: z.number().int().min(1).optional(),
    /** This listener's maximum packet size (bytes); absent: mqtt.maxPacketSize. */
    maxPacketSize: z.number().int().min(64).max(268435460).optional(),
  })
  .strict()
  .superRefine((l, ctx) => {
    for (const issue of listenerAuthIssues(l)) ctx.addIssue({ code: 'custom', ...issue });
    if (l.psk !== undefined && l.tls === undefined) ctx.addIssue({ code: 'custom', path: ['psk'], message: 'psk needs a TLS listener (tls.cert and tls.key)' });
    // SECURITY: ws is plaintext exactly like mqtt, wss is TLS exactly like mqtts.
    const plaintext = l.protocol === 'mqtt' || l.protocol === 'ws';
    if (plaintext && !l.insecure) {
      ctx.addIssue({ code: 'custom', path: ['insecure'], message: `a plaintext (protocol: ${l.protocol}) listener must say insecure: true` });
    }
    if (!plaintext && l.tls === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: `a TLS listener (protocol: ${l.protocol}) needs tls.cert and tls.key` });
    }
    if (l.path !== undefined && l.protocol !== 'ws' && l.protocol !== 'wss') {
      ctx.addIssue({ code: 'custom', path: ['path'], message: 'path applies only to ws and wss listeners' });
    }
    if (!plaintext && l.tls !== undefined && l.tls.clientCerts !== 'none' && l.tls.ca === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls', 'ca'], message: 'client certificates need tls.ca (the trust anchors)' });
    }
  });

/** Where a ws/wss listener serves MQTT when the config names no path (the common convention). */
export const DEFAULT_WS_PATH = '/mqtt';

const mqttSchema = z
  .object({
    maxPacketSize: z.number().int().min(64).max(268435460).default(1048576),
    maxQos: z.number().int().min(0).max(2).default(2),
    retainAvailable: z.boolean().default(true),
    maxInflight: z.number().int().min(1).max(65535).default(100),
    maxQueued: z.number().int().min(0).default(10000),
    sessionExpiryMax: z.number().int().min(0).max(0xffffffff).default(604800),
    connectTimeout: z.number().positive().default(10),
    maxKeepAlive: z.number().int().min(1).max(65535).default(65535),
    topicAliasMax: z.number().int().min(0).max(65535).default(64),
    maxTopicLevels: z.number().int().min(1).default(128),
  })
  .strict();

export const configSchema = z
  .object({
    dataDir: z.string().default('./bastion-data'),
    listeners: z.array(listenerSchema).min(1),
    mqtt: mqttSchema.default(mqttSchema.parse({})),
    /**
     * `format`: `auto` (human lines when stderr is a terminal, JSON lines otherwise),
     * `json` (always JSON, for collectors), `pretty` (always human lines, local times).
     */
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'), format: z.enum(['auto', 'json', 'pretty']).default('auto') })
      .strict()
      .default({ level: 'info', format: 'auto' }),
    persistence: z
      .object({ enabled: z.boolean().default(true), synchronous: z.enum(['NORMAL', 'FULL']).default('NORMAL') })
      .strict()
      .default({ enabled: true, synchronous: 'NORMAL' }),
    /**
     * The built-in PKI (`bastion ca|cert|crl`). `dir` defaults to `<dataDir>/pki`.
     * `manageCrl`: re-sign crl.pem at start and hourly when past half its lifetime.
     * `ocsp`: run the OCSP responder inside the broker (plain HTTP, RFC 6960).
     */
    pki: z
      .object({
        dir: z.string().min(1).optional(),
        manageCrl: z.boolean().default(false),
        ocsp: z.object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535) }).strict().optional(),
      })
      .strict()
      .default({ manageCrl: false }),
    /** The HTTPS admin API (off unless present): see admin-config.ts. */
    admin: adminSchema.optional(),
    /**
     * Authorization (authz-config.ts). SECURITY: absent means the default device policy
     * (own `devices/${cert.cn}/#`, read `broadcast/#`; deny everything else), logged loudly.
     */
    authz: authzSchema.optional(),
    /** Settings of the authentication providers shared by all listeners (auth-config.ts). */
    authn: authnSchema,
    /** Protection against abuse (limits-config.ts): on by default. */
    limits: limitsSchema.default(defaultLimitsConfig()),
    /** The tamper-evident audit log and its SIEM exports (audit-config.ts). */
    audit: auditSchema.default(auditSchema.parse({})),
    /** Prometheus metrics at /metrics on the admin listener (operators authenticate as for the API). */
    metrics: z.object({ enabled: z.boolean().default(true) }).strict().default({ enabled: true }),
    /**
     * `$SYS/broker/...` topics (Mosquitto-compatible names), published every `intervalSeconds`;
     * 0 turns them off. SECURITY: only clients whose role allows subscribing to `$SYS/#` read them.
     */
    sys: z.object({ intervalSeconds: z.number().int().min(0).default(10) }).strict().default({ intervalSeconds: 10 }),
    /**
     * Cluster mode through NATS JetStream (cluster-config.ts). Absent: one broker, no NATS,
     * exactly as without it.
     */
    cluster: clusterSchema.optional(),
    /**
     * Device provisioning by claim certificate or one-time token, renewal and EST
     * (provisioning-config.ts). Absent: no templates, so nothing can be provisioned.
     */
    provisioning: provisioningSchema.default(provisioningSchema.parse({})),
    /**
     * The broker side of OTA updates (ota-config.ts): the block transfer's budget and
     * block sizes. Absent: the defaults (32 MiB/s, 32 blocks a request, 16 KiB blocks).
     */
    ota: otaSchema.default(otaSchema.parse({})),
    /**
     * Behaviour detection and security audits (defender-config.ts). Absent: detection on
     * with the built-in rules, alerts only; an audit every hour.
     */
    defender: defenderSchema.default(defenderSchema.parse({})),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const issue of authnIssues(c.listeners, c.authn)) ctx.addIssue({ code: 'custom', ...issue });
    const names = new Set<string>();
    c.listeners.forEach((l, i) => {
      if (names.has(l.name)) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'name'], message: `duplicate listener name "${l.name}"` });
      names.add(l.name);
    });
  });

export type BastionConfig = z.infer<typeof configSchema>;
export type ListenerConfig = BastionConfig['listeners'][number];
export type MqttConfig = BastionConfig['mqtt'];

/** Turns a zod error into one readable line naming the key. */
export function formatConfigError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue === undefined) return 'invalid configuration';
  const path = issue.path.length > 0 ? issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[') : '(root)';
  return `config error at ${path}: ${issue.message}`;
}

/** The mqtt section with every default applied, for code that runs without a config file. */
export function defaultMqttConfig(overrides: Partial<MqttConfig> = {}): MqttConfig {
  return { ...mqttSchema.parse({}), ...overrides };
}
