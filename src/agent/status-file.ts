import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TideError } from '../errors.js';
import type { VmStatus } from '../monitor/vm-monitor.js';

/**
 * The agent publishes its state as one JSON file, replaced atomically, so
 * `tideline status` works without talking to the agent and shows the last
 * state even when the agent is gone (with its age).
 */
export const DEFAULT_STATUS_FILE = '/run/tideline/status.json';

export interface StatusDocument {
  updatedAt: string;
  agentPid: number;
  vms: VmStatus[];
}

export class StatusUnavailableError extends TideError {
  readonly code = 'status-unavailable';
}

export async function writeStatus(file: string, vms: VmStatus[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const document: StatusDocument = { updatedAt: new Date().toISOString(), agentPid: process.pid, vms };
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(document, null, 2)}\n`);
  await rename(temporary, file);
}

export async function readStatus(file: string): Promise<StatusDocument> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new StatusUnavailableError(`no agent status at ${file}: is 'tideline agent' running (systemctl status tideline-agent)?`, { cause: error });
  }
  try {
    return JSON.parse(text) as StatusDocument;
  } catch (error) {
    throw new StatusUnavailableError(`agent status file ${file} is not valid JSON; the agent rewrites it on its next change`, { cause: error });
  }
}
