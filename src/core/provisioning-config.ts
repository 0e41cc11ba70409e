/**
 * The `provisioning` section (issue 13): the templates a device can be provisioned
 * against, and the rules of ownership tokens, renewal and request rates. Owns: what a valid
 * template is and the defaults. Must not: expand patterns (provisioning/template.ts) or
 * touch files.
 *
 * SECURITY: a template decides a device's identity and roles, so every pattern must use
 * only declared parameters, and every parameter has a pattern (anchored, so a value cannot
 * smuggle extra text into an identity). A pre-provisioning hook must be https.
 */
import { z } from 'zod';

/** Names of templates and parameters: one MQTT topic level, no wildcards, no surprises. */
export const TEMPLATE_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PARAMETER_NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** `${name}` placeholders in identity patterns. */
export const PLACEHOLDER_RE = /\$\{([^}]*)\}/g;

/** Key types a device may ask a certificate for (provisioning.keyTypes): what the PKI certifies. */
export const DEVICE_KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072'] as const;

const parameterSchema = z
  .object({
    /** A regular expression the whole value must match (anchored by the broker). */
    pattern: z.string().min(1).max(512),
    required: z.boolean().default(true),
  })
  .strict();

const hookSchema = z
  .object({
    url: z.string().url().refine((u) => u.startsWith('https://'), 'the pre-provisioning hook must be an https:// URL'),
    /** A CA file to verify the hook's server with (default: the system's trust store). */
    ca: z.string().min(1).optional(),
    /** At most 5 s: a device waits on it. */
    timeoutSeconds: z.number().positive().max(5).default(5),
  })
  .strict();

export const templateSchema = z
  .object({
    /** The certificate's CN and the device's identity, e.g. `sensor-${serialNumber}`. */
    commonName: z.string().min(1).max(64),
    organizationalUnit: z.string().min(1).max(64).optional(),
    /** SAN patterns: `dns:${serialNumber}.devices.example.com`, `uri:urn:dev:${serialNumber}`. */
    sans: z.array(z.string().regex(/^(dns|uri|email|ip):.+$/, 'a SAN is dns:, uri:, email: or ip: then a value')).max(8).default([]),
    /** Validity of a device certificate in days: short is the point. */
    days: z.number().int().min(1).max(825).default(30),
    roles: z.array(z.string().min(1)).min(1),
    parameters: z.record(z.string().regex(PARAMETER_NAME_RE, 'a parameter name is a letter then letters, digits or _'), parameterSchema).default({}),
    /** When set, only these `serialNumber` parameter values may provision. */
    allowSerials: z.array(z.string().min(1)).optional(),
    hook: hookSchema.optional(),
    /** Returned to the device on registration (its `deviceConfiguration`). */
    deviceConfiguration: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
  })
  .strict()
  .superRefine((t, ctx) => {
    const declared = new Set(Object.keys(t.parameters));
    const check = (text: string, path: (string | number)[]): void => {
      for (const m of text.matchAll(PLACEHOLDER_RE)) {
        const name = m[1] ?? '';
        if (!declared.has(name)) ctx.addIssue({ code: 'custom', path, message: `\${${name}} is not a declared parameter` });
        else if (t.parameters[name]?.required === false) ctx.addIssue({ code: 'custom', path, message: `\${${name}} is an optional parameter; an identity may use required ones only` });
      }
    };
    check(t.commonName, ['commonName']);
    if (t.organizationalUnit !== undefined) check(t.organizationalUnit, ['organizationalUnit']);
    t.sans.forEach((s, i) => check(s, ['sans', i]));
    for (const [name, p] of Object.entries(t.parameters)) {
      try {
        new RegExp(p.pattern, 'u');
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['parameters', name, 'pattern'], message: `not a valid regular expression: ${(err as Error).message}` });
      }
    }
    if (t.allowSerials !== undefined && !declared.has('serialNumber')) ctx.addIssue({ code: 'custom', path: ['allowSerials'], message: 'allowSerials needs a serialNumber parameter' });
  });

export const provisioningSchema = z
  .object({
    templates: z
      .record(z.string().regex(TEMPLATE_NAME_RE, 'a template name is 1-64 letters, digits, _ or -'), templateSchema)
      .default({}),
    /** How long a step-1 ownership token lasts. */
    ownershipTokenMinutes: z.number().int().min(1).max(24 * 60).default(60),
    /** Requests per minute one claim (or token) may make; beyond: Throttled. */
    ratePerMinute: z.number().int().min(1).max(100_000).default(60),
    keyTypes: z.array(z.enum(DEVICE_KEY_TYPES)).min(1).default([...DEVICE_KEY_TYPES]),
    renewal: z
      .object({
        /** A certificate this close to its notAfter is told to renew. */
        windowDays: z.number().positive().max(365).default(7),
        /** The old certificate is revoked this long after a renewal if the new one was not used first. */
        graceHours: z.number().min(0).max(24 * 30).default(24),
        maxPerDay: z.number().int().min(1).max(1000).default(3),
      })
      .strict()
      .default({ windowDays: 7, graceHours: 24, maxPerDay: 3 }),
  })
  .strict();

export type ProvisioningConfig = z.infer<typeof provisioningSchema>;
export type TemplateConfig = z.infer<typeof templateSchema>;
