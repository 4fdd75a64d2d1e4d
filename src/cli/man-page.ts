/**
 * tideline(1), made from the command's own help texts at build time, so the
 * manual never drifts from what `--help` says (pure: the help texts come in).
 */
export interface CommandHelp {
  name: string;
  help: string;
}

/** A line of text as roff shows it: backslashes doubled, a leading dot or quote kept from being a request. */
export function roffText(line: string): string {
  const escaped = line.replaceAll('\\', '\\e').replaceAll('-', '\\-');
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

function verbatim(text: string): string[] {
  return ['.nf', ...text.trimEnd().split('\n').map(roffText), '.fi'];
}

export function manPage(options: { version: string; dateIso: string; overview: string; commands: readonly CommandHelp[] }): string {
  const lines = [
    `.TH TIDELINE 1 "${options.dateIso}" "tideline ${options.version}" "User Commands"`,
    '.SH NAME',
    'tideline \\- thin\\-provisioned qcow2 disks on shared block storage for KVM/libvirt hosts',
    '.SH SYNOPSIS',
    '.B tideline',
    '.I command',
    '[options]',
    '.SH DESCRIPTION',
    'A thin disk\'s logical volume starts small; while the guest writes, the host agent notices the high\\-water mark, asks the storage manager (SPM) for more space through a mailbox on the shared storage, and refreshes the volume. A VM that still runs out is paused by QEMU and resumed once its volume grew.',
    'The agent and the SPM run as systemd units on every host (tideline\\-agent, tideline\\-spm) and read',
    '.IR /etc/tideline/tideline.conf .',
    '.SH COMMANDS',
    ...verbatim(options.overview),
  ];
  for (const command of options.commands) lines.push(`.SS ${roffText(command.name)}`, ...verbatim(command.help));
  lines.push(
    '.SH FILES',
    '.TP',
    '.I /etc/tideline/tideline.conf',
    'host configuration of both services: storage domain, mailbox, host id, lease, extension policy',
    '.TP',
    '.I /etc/sysconfig/tideline',
    'extra arguments of the units; a flag wins over the configuration file',
    '.TP',
    '.I /run/tideline/status.json',
    'the agent\'s view of every thin drive, read by \\fBtideline status\\fR',
    '.SH SEE ALSO',
    '.BR virsh (1),',
    '.BR lvm (8),',
    '.BR sanlock (8),',
    '/usr/share/doc/tideline/README.md',
  );
  return `${lines.join('\n')}\n`;
}
