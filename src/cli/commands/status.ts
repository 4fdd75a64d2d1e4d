import { parseArgs } from 'node:util';
import type { CommandModule } from 'yargs';
import { DEFAULT_STATUS_FILE, readStatus } from '../../agent/status-file.js';
import { isAlive } from '../../util/process-alive.js';
import { renderStatusTable } from '../status-table.js';

interface StatusArguments {
  json: boolean;
  file: string;
}

/**
 * `tideline status` without yargs, for the plain forms (monitoring runs it
 * often, and yargs alone costs more than starting node): false when the
 * arguments need the full parser (help, a mistake, anything unknown).
 */
export async function runStatusQuickly(args: readonly string[]): Promise<boolean> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { json: { type: 'boolean' }, file: { type: 'string' } }, strict: true, allowPositionals: false });
  } catch {
    return false;
  }
  await showStatus({ json: parsed.values.json ?? false, file: parsed.values.file ?? DEFAULT_STATUS_FILE });
  return true;
}

async function showStatus(argv: StatusArguments): Promise<void> {
  const document = await readStatus(argv.file);
  if (argv.json) {
    process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    return;
  }
  const ageSeconds = Math.round((Date.now() - Date.parse(document.updatedAt)) / 1000);
  const agent = isAlive(document.agentPid) ? `agent ${document.agentPid} running` : `agent ${document.agentPid} is NOT running: this is its last state`;
  process.stdout.write(`${agent}; updated ${ageSeconds} s ago\n`);
  process.stdout.write(document.vms.length === 0 ? 'no thin drives are being watched\n' : `${renderStatusTable(document.vms)}\n`);
  // A drive in error is something an admin must act on; scripts can test the exit code.
  if (document.vms.some((vm) => vm.drives.some((drive) => drive.error))) process.exitCode = 1;
}

export const statusCommand: CommandModule<object, StatusArguments> = {
  command: 'status',
  describe: "Show the agent's view of every thin drive on this host",
  builder: (yargs) =>
    yargs
      .option('json', { type: 'boolean', default: false, describe: 'Print the status document as JSON' })
      .option('file', { type: 'string', default: DEFAULT_STATUS_FILE, describe: 'Status file the agent writes' }),
  handler: (argv) => showStatus(argv),
};
