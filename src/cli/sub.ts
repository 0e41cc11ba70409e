/**
 * `bastion sub`: subscribe and print messages, one per line, like mosquitto_sub.
 * Owns: topic filter checks, SUBACK checks, output format (-v), -C count.
 * Must not: handle connection flags or errors itself (client-flags.ts, client-errors.ts and
 * client-run.ts do).
 */
import { Command, Option } from 'commander';
import type { ISubscriptionGrant, ISubscriptionMap } from 'mqtt';
import { isValidTopicFilter } from '../protocol/topic.js';
import { ClientCommandError, describeReasonCode } from './client-errors.js';
import {
  addConnectionOptions,
  createClientCommand,
  parsePositiveCount,
  parseQos,
  readConnectionFlags,
  type Qos,
} from './client-flags.js';
import { runClientCommand } from './client-run.js';

const NEWLINE = Buffer.from('\n');

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function isRefused(grant: ISubscriptionGrant): boolean {
  // [MQTT-3.9.3] v3.1.1 failure is 0x80; v5 reason codes >= 0x80 are refusals.
  return (grant.qos & 0x80) !== 0;
}

export function registerSubCommand(program: Command): void {
  const cmd = createClientCommand(program, 'sub')
    .description('subscribe and print each message on one line (like mosquitto_sub); TLS unless --plain')
    .option('-t, --topic <filter>', 'topic filter to subscribe to (repeatable)', collect, [])
    .addOption(new Option('-q, --qos <qos>', 'maximum quality of service: 0, 1 or 2').default(0).argParser(parseQos))
    .option('-C, --count <n>', 'exit 0 after receiving this many messages', parsePositiveCount)
    .option('-v, --verbose', "print 'topic payload' instead of the payload alone, and the connection's TLS version, cipher and key-exchange group to stderr", false);
  addConnectionOptions(cmd);

  cmd.action(async (_options: unknown, command: Command) => {
    const opts = command.opts();
    const flags = readConnectionFlags(command, opts);
    const topicsOption: unknown = opts['topic'];
    const topics = Array.isArray(topicsOption) ? topicsOption.map(String) : [];
    if (topics.length === 0) {
      command.error("error: required option '-t, --topic <filter>' not specified");
    }
    for (const filter of topics) {
      if (!isValidTopicFilter(filter)) {
        command.error(`error: invalid topic filter '${filter}': '#' only as the last level, '+' only as a whole level`);
      }
    }
    const qosOption: unknown = opts['qos'];
    const qos: Qos = qosOption === 1 || qosOption === 2 ? qosOption : 0;
    const countOption: unknown = opts['count'];
    const count = typeof countOption === 'number' ? countOption : undefined;
    const verbose = opts['verbose'] === true;

    await runClientCommand('sub', flags, ({ client, warn }) =>
      new Promise<void>((resolve, reject) => {
        let received = 0;
        let done = false;
        const finish = (): void => {
          done = true;
          client.removeListener('message', onMessage);
          process.stdout.removeListener('error', onStdoutError);
          resolve();
        };
        // A closed stdout (`bastion sub ... | head -1`) ends the command quietly.
        const onStdoutError = (): void => finish();
        const onMessage = (topic: string, payload: Buffer): void => {
          if (done) return;
          const line = verbose ? [Buffer.from(`${topic} `, 'utf8'), payload, NEWLINE] : [payload, NEWLINE];
          process.stdout.write(Buffer.concat(line));
          received += 1;
          if (count !== undefined && received >= count) finish();
        };
        process.stdout.on('error', onStdoutError);
        client.on('message', onMessage);

        const subscriptions: ISubscriptionMap = {};
        for (const filter of topics) subscriptions[filter] = { qos };
        // MQTT.js reports a refused v5 subscription as an error with the *requested* QoS in
        // `granted`, so the SUBACK's own codes are read from the packet itself.
        let subackCodes: number[] | null = null;
        const onPacket = (packet: { cmd: string; granted?: unknown }): void => {
          if (packet.cmd === 'suback' && Array.isArray(packet.granted)) subackCodes = packet.granted.filter((g): g is number => typeof g === 'number');
        };
        client.on('packetreceive', onPacket);
        client.subscribe(subscriptions, (err, granted) => {
          client.removeListener('packetreceive', onPacket);
          if (granted === undefined) {
            reject(new ClientCommandError('ERR_CLI_SUBSCRIBE', `subscribe failed: ${err?.message ?? 'no SUBACK'}`));
            return;
          }
          const codes = subackCodes as number[] | null;
          const results: ISubscriptionGrant[] = granted.map((g, i) => ({ ...g, qos: (codes?.[i] ?? g.qos) as ISubscriptionGrant['qos'] }));
          const refused = results.filter(isRefused);
          const describe = (g: ISubscriptionGrant): string => `'${g.topic}': ${describeReasonCode(g.qos)}`;
          if (refused.length > 0 && refused.length === results.length) {
            // Like mosquitto_sub: fail only when nothing at all was granted.
            reject(
              new ClientCommandError('ERR_CLI_SUBSCRIBE', `the broker refused every subscription: ${refused.map(describe).join(', ')}`),
            );
            return;
          }
          for (const g of refused) warn(`the broker refused the subscription ${describe(g)}`);
        });
      }),
    );
  });
}
