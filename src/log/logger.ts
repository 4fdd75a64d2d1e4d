import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * One JSON line per event on stderr (journald keeps it), so stdout stays free
 * for command output such as the lab's live table or `status --json`.
 */
export function createLogger(options: { level?: string; destination?: number | string } = {}): Logger {
  return pino(
    { level: options.level ?? process.env.TIDELINE_LOG_LEVEL ?? 'info', base: { service: 'tideline' } },
    pino.destination({ dest: options.destination ?? 2, sync: true }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
