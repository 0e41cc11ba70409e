/**
 * Where `bastion serve` writes: the log records (pino) and the start banner, on one
 * stream (stderr) through one writer, so they appear in the order they happened.
 * Owns: picking JSON or human lines, and the human line format.
 *
 * JSON lines (pino's format) stay the default for machines (collectors, journald, files).
 * When stderr is a terminal (`log.format: auto`) or with `log.format: pretty` each record
 * becomes one human line with the local time: `2026-05-04 13:02:11.042 INFO  msg k=v`.
 * Why our own formatter and not pino-pretty: pino-pretty brings a dozen packages into a
 * security product's dependency tree and, used as a pino transport, formats on a worker
 * thread, so its lines could land after a banner line written later; the format here is
 * ~40 lines and runs synchronously in the same write.
 */
import { pino } from 'pino';
import type { Logger } from '../core/logger.js';

export type LogFormat = 'auto' | 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty'];

export interface LogOutput {
  logger: Logger;
  /** True when records are written as human lines. */
  pretty: boolean;
  /** Writes banner text (one or more whole lines) to the same stream as the logs. */
  text(lines: string): void;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
/** pino's own keys, shown in the line's fixed part (or, for pid and hostname, not at all). */
const FIXED = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

const two = (n: number): string => String(n).padStart(2, '0');

/** Local date and time with milliseconds: what a person at this machine reads on the clock. */
export function localTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  // pino serializes errors as { type, message, stack }: the message is what a person needs.
  const err = v as { message?: unknown; stack?: unknown } | null;
  if (typeof err === 'object' && err !== null && typeof err.message === 'string' && err.stack !== undefined) return JSON.stringify(err.message);
  return JSON.stringify(v) ?? String(v);
}

/** One pino JSON record → one human line; a line that is not a record passes unchanged. */
export function prettyLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = typeof rec.time === 'number' ? localTime(rec.time) : localTime(Date.now());
  const level = LEVELS[rec.level as number] ?? String(rec.level);
  const fields = Object.entries(rec)
    .filter(([k]) => !FIXED.has(k))
    .map(([k, v]) => `${k}=${value(v)}`);
  return `${time} ${level} ${typeof rec.msg === 'string' ? rec.msg : ''}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}\n`;
}

export function createLogOutput(level: string, format: LogFormat, stream: NodeJS.WriteStream = process.stderr): LogOutput {
  const pretty = format === 'pretty' || (format === 'auto' && stream.isTTY === true);
  // process.stderr writes synchronously to files, terminals and (on Linux) pipes, so a
  // record written before the banner line is also read before it.
  const sink = pretty ? { write: (chunk: string): void => void stream.write(prettyLine(chunk)) } : stream;
  const logger: Logger = pino({ level, base: { pid: process.pid } }, sink);
  return { logger, pretty, text: (lines) => void stream.write(lines) };
}
