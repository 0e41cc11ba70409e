/**
 * What every bench entry point arms before it starts brokers: a watchdog over the whole
 * run, and signal and exit handlers, so that no broker or nats-server of a run outlives the
 * bench. Owns: those handlers. Must not: know which brokers run (`killNow` does).
 */

/** Arms the guards; returns the watchdog timer (clear it when the run ends). */
export function guardRun(label: string, watchdogMs: number, killNow: () => void): NodeJS.Timeout {
  const watchdog = setTimeout(() => {
    process.stderr.write(`${label}: watchdog: still running after ${watchdogMs / 60000} minutes, giving up\n`);
    killNow();
    process.exit(3);
  }, watchdogMs);
  const onSignal = (): void => {
    killNow();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Whatever ends this process, what the run started must not outlive it.
  process.once('exit', killNow);
  return watchdog;
}
