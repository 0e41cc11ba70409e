/**
 * The message of the config error a raw config raises through the real schema (fails the
 * test when it parses). Must not: be imported by src/.
 */
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/server/load-config.js';

export function configError(raw: Record<string, unknown>): string {
  try {
    parseConfig(raw, '/tmp');
  } catch (err) {
    return (err as Error).message;
  }
  return assert.fail('expected a config error');
}
