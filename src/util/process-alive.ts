import { readFileSync } from 'node:fs';

/**
 * Whether a process with this PID exists and has not ended: signal 0 sends
 * nothing, and a zombie (ended, its parent not yet told) answers it too, so
 * its state in /proc is read as well.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/** The state letter follows the command name in parentheses, which may itself hold ") ". */
function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // No /proc (or it went meanwhile): only signal 0 can tell, and it said the process exists.
    return false;
  }
  return stat.slice(stat.lastIndexOf(') ') + 2, stat.lastIndexOf(') ') + 3) === 'Z';
}
