/**
 * `bastion pub`: publish one message, like mosquitto_pub.
 * Owns: the payload source (-m, -f or -s), topic checks, and waiting until the publish is
 * acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP) or flushed (QoS 0) before exiting 0.
 * Must not: handle connection flags or errors itself (client-flags.ts, client-errors.ts and
 * client-run.ts do).
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { isValidTopicName } from '../protocol/topic.js';
import { ClientCommandError, describeReasonCode, fileError, reportFailure } from './client-errors.js';
import { addConnectionOptions, createClientCommand, parseQos, readConnectionFlags, type Qos } from './client-flags.js';
import { runClientCommand } from './client-run.js';

/** The largest payload one PUBLISH can carry (remaining length limit, minus headers). */
const MAX_PAYLOAD_BYTES = 268_435_455 - 65_535 - 4;

type PayloadSource = { kind: 'message'; text: string } | { kind: 'file'; path: string } | { kind: 'stdin' };

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buf.length;
    if (size > MAX_PAYLOAD_BYTES) throw tooLarge('stdin');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function tooLarge(what: string): ClientCommandError {
  return new ClientCommandError('ERR_CLI_PAYLOAD_TOO_LARGE', `${what} is larger than the ${MAX_PAYLOAD_BYTES} bytes one MQTT message can carry`);
}

async function loadPayload(source: PayloadSource): Promise<Buffer> {
  switch (source.kind) {
    case 'message':
      return Buffer.from(source.text, 'utf8');
    case 'file': {
      let data: Buffer;
      try {
        data = await readFile(source.path);
      } catch (err) {
        throw fileError('message file', source.path, err);
      }
      if (data.length > MAX_PAYLOAD_BYTES) throw tooLarge(`message file '${source.path}'`);
      return data;
    }
    case 'stdin':
      return readStdin();
  }
}

function payloadSource(cmd: Command, message: unknown, file: unknown, stdin: unknown): PayloadSource {
  const sources: PayloadSource[] = [];
  if (typeof message === 'string') sources.push({ kind: 'message', text: message });
  if (typeof file === 'string') sources.push({ kind: 'file', path: file });
  if (stdin === true) sources.push({ kind: 'stdin' });
  const [only, ...rest] = sources;
  if (only === undefined || rest.length > 0) {
    cmd.error('error: give exactly one of -m/--message, -f/--file or -s/--stdin');
  }
  return only;
}

export function registerPubCommand(program: Command): void {
  const cmd = createClientCommand(program, 'pub')
    .description('publish one message (like mosquitto_pub); TLS unless --plain')
    .requiredOption('-t, --topic <topic>', 'topic to publish to')
    .option('-m, --message <text>', 'message payload')
    .option('-f, --file <file>', 'send the contents of a file as the payload')
    .option('-s, --stdin', 'read the payload from stdin')
    .addOption(new Option('-q, --qos <qos>', 'quality of service: 0, 1 or 2').default(0).argParser(parseQos))
    .option('-r, --retain', 'ask the broker to retain the message', false)
    .option('-v, --verbose', 'print the TLS version, cipher and key-exchange group of the connection to stderr', false);
  addConnectionOptions(cmd);

  cmd.action(async (_options: unknown, command: Command) => {
    const opts = command.opts();
    const flags = readConnectionFlags(command, opts);
    const topic = String(opts['topic']);
    if (!isValidTopicName(topic)) {
      command.error(`error: invalid topic name '${topic}': it must be non-empty and contain no '+', '#' or NUL`);
    }
    const source = payloadSource(command, opts['message'], opts['file'], opts['stdin']);
    const qosOption: unknown = opts['qos'];
    const qos: Qos = qosOption === 1 || qosOption === 2 ? qosOption : 0;
    const retain = opts['retain'] === true;

    let payload: Buffer;
    try {
      payload = await loadPayload(source);
    } catch (err) {
      reportFailure(err);
      return;
    }

    await runClientCommand('pub', flags, ({ client }) =>
      new Promise<void>((resolve, reject) => {
        // QoS 1/2: the callback runs on PUBACK / PUBCOMP; QoS 0: once the packet is written
        // (the clean disconnect that follows flushes it before the process exits).
        client.publish(topic, payload, { qos, retain }, (err) => {
          if (!err) {
            resolve();
            return;
          }
          const code: unknown = (err as Error & { code?: unknown }).code;
          reject(
            new ClientCommandError(
              'ERR_CLI_PUBLISH',
              typeof code === 'number'
                ? `the broker refused the publish to '${topic}': ${describeReasonCode(code)}`
                : `publish to '${topic}' failed: ${err.message}`,
            ),
          );
        });
      }),
    );
  });
}
