import { readdir, readFile } from 'node:fs/promises';

/** Clock ticks per second in /proc (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** utime, stime, cutime and cstime of a process, in seconds; zeros once it is gone. */
async function statTimes(pid: number): Promise<{ own: number; waitedChildren: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return { own: 0, waitedChildren: 0 };
  // Fields after the command name, which may itself hold ") ".
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  return { own: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS, waitedChildren: (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS };
}

/** CPU seconds a process used itself. */
export async function processCpuSeconds(pid: number): Promise<number> {
  return (await statTimes(pid)).own;
}

/** CPU seconds of a process, the children it waited for, and its live descendants. */
export async function treeCpuSeconds(pid: number): Promise<number> {
  const { own, waitedChildren } = await statTimes(pid);
  let seconds = own + waitedChildren;
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const children = (await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean);
    for (const child of children) seconds += await treeCpuSeconds(Number(child));
  }
  return seconds;
}
