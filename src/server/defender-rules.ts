/**
 * The detection rules in force (issue 15 item 2, "config and admin API"): the config's
 * `defender.detect` rules and actions, unless an operator replaced them at run time
 * (PUT /api/v1/defender/rules). A replacement is kept in `<dataDir>/defender-rules.json`
 * (so it survives a restart) until it is reset. Owns: that file, the validation of a
 * replacement, and the one mutable settings object the responder reads. Must not: judge
 * or act (the evaluator and the responder do); in a cluster the entry is shared by
 * cluster-defender.ts.
 *
 * SECURITY: a replacement is validated by the same strict schema as the config (a
 * misspelt key is refused, never ignored); a file that fails it at start is logged and
 * ignored, and the config's rules apply, rather than detection running with no rules.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { formatConfigError } from '../core/config.js';
import { defenderRulesDocumentSchema, type DefenderActionName, type DefenderRulesDocument, type DetectSettings } from '../core/defender-config.js';
import { BastionError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseDetectConfig } from '../defender/detect/detect-config.js';
import type { Rule } from '../defender/detect/rules.js';
import { unknownActionRules } from '../defender/response/rule-actions.js';
import { writeFileAtomic } from './pki-files.js';

export const DEFENDER_RULES_FILE = 'defender-rules.json';
const FILE_MODE = 0o600;

/** What the responder reads on every alarm: replaced in place when the rules change. */
export interface LiveActionSettings {
  actions: Record<string, DefenderActionName[]>;
  defaultActions: DefenderActionName[];
  dryRun: boolean;
  banSeconds: number;
}

/** A replacement as it travels (the file, the cluster entry): the document, who set it and when. */
export interface RulesOverride {
  doc: DefenderRulesDocument;
  by: string;
  at: number;
}

export function parseRulesDocument(input: unknown): DefenderRulesDocument {
  const parsed = defenderRulesDocumentSchema.safeParse(input);
  if (!parsed.success) throw new BastionError('ERR_DEFENDER_RULES', formatConfigError(parsed.error as z.ZodError).replace(/^config error/, 'rules error'));
  return parsed.data;
}

export class LiveRules {
  readonly settings: LiveActionSettings;
  private current: Rule[];
  private override: RulesOverride | null = null;
  private readonly file: string;
  /** Told of every change of the rules (the evaluator replaces its rules). */
  onRules: ((rules: Rule[]) => void) | null = null;

  constructor(
    private readonly config: DetectSettings,
    dataDir: string,
    private readonly logger: Logger,
  ) {
    this.file = join(dataDir, DEFENDER_RULES_FILE);
    this.settings = { actions: { ...config.actions }, defaultActions: [...config.defaultActions], dryRun: config.dryRun, banSeconds: config.banSeconds };
    this.current = parseDetectConfig(config).rules;
    const stored = this.readFile();
    if (stored !== null) this.apply(stored);
    this.warnUnknown();
  }

  get rules(): Rule[] {
    return this.current;
  }

  /** The replacement in force, or null when the config's rules apply. */
  get overridden(): RulesOverride | null {
    return this.override;
  }

  /** Replaces the rules (validated; a bad document throws ERR_DEFENDER_RULES) and keeps the replacement. */
  async set(input: unknown, by: string, at: number): Promise<RulesOverride> {
    const next = { doc: parseRulesDocument(input), by, at };
    this.apply(next);
    this.warnUnknown();
    await this.save(next);
    return next;
  }

  /** Back to the config's rules and actions. */
  reset(): void {
    this.apply(null);
    rmSync(this.file, { force: true });
  }

  /** A replacement (or a reset, null) from another node: applied and kept, not announced again. */
  async adopt(next: RulesOverride | null): Promise<void> {
    if (next === null) {
      if (this.override !== null) this.reset();
      return;
    }
    if (this.override !== null && this.override.at >= next.at) return;
    this.apply(next);
    await this.save(next);
  }

  /** Keeps a replacement for the next start (atomically: a crash leaves the old file or the new one). */
  private async save(next: RulesOverride): Promise<void> {
    await writeFileAtomic(this.file, `${JSON.stringify(next, null, 2)}\n`, FILE_MODE);
  }

  private apply(next: RulesOverride | null): void {
    const doc = next?.doc ?? {};
    this.current = doc.rules !== undefined ? doc.rules.map((r) => ({ ...r })) : parseDetectConfig(this.config).rules;
    this.settings.actions = { ...(doc.actions ?? this.config.actions) };
    this.settings.defaultActions = [...(doc.defaultActions ?? this.config.defaultActions)];
    this.override = next;
    this.onRules?.(this.current);
  }

  private warnUnknown(): void {
    for (const name of unknownActionRules(this.settings, this.current)) this.logger.warn({ rule: name }, 'defender actions name a rule that does not exist; it does nothing');
  }

  private readFile(): RulesOverride | null {
    if (!existsSync(this.file)) return null;
    try {
      const raw = JSON.parse(readFileSync(this.file, 'utf8')) as { doc?: unknown; by?: unknown; at?: unknown };
      if (typeof raw.by !== 'string' || typeof raw.at !== 'number') throw new Error('not a rules file (by, at)');
      return { doc: parseRulesDocument(raw.doc), by: raw.by, at: raw.at };
    } catch (err) {
      this.logger.error({ file: this.file, err: err instanceof Error ? err.message : String(err) }, 'cannot read the detection rules set through the API; the config’s rules apply');
      return null;
    }
  }
}
