#!/usr/bin/env node
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandModule } from 'yargs';
import { InvalidConfigError } from '../errors.js';
import { reportFailure } from './failure.js';
import { ranQuickly } from './quick-commands.js';

/**
 * Each command's module, loaded only when that command runs: a command pulls
 * in its own dependencies (pino, zod, prom-client, the QMP client...), and
 * `tideline status` should not pay for the agent's. All of them load for
 * `--help` and for a name that is no command (so yargs can list or suggest).
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  lab: async () => (await import('./commands/lab.js')).labCommand as CommandModule,
  agent: async () => (await import('./commands/agent.js')).agentCommand as CommandModule,
  status: async () => (await import('./commands/status.js')).statusCommand as CommandModule,
  cluster: async () => (await import('./commands/cluster.js')).clusterCommand as CommandModule,
  spm: async () => (await import('./commands/spm.js')).spmCommand as CommandModule,
  volume: async () => (await import('./commands/volume.js')).volumeCommand as CommandModule,
  snapshot: async () => (await import('./commands/snapshot.js')).snapshotCommand as CommandModule,
  policy: async () => (await import('./commands/policy.js')).policyCommand as CommandModule,
  doctor: async () => (await import('./commands/doctor.js')).doctorCommand as CommandModule,
  hook: async () => (await import('./commands/hook.js')).hookCommand as CommandModule,
  mailbox: async () => (await import('./commands/mailbox.js')).mailboxCommand as CommandModule,
  lease: async () => (await import('./commands/mailbox.js')).leaseCommand as CommandModule,
  'loop-domain': async () => (await import('./commands/loop-domain.js')).loopDomainCommand as CommandModule,
  'lvm-domain': async () => (await import('./commands/lvm-domain.js')).lvmDomainCommand as CommandModule,
  'man-page': async () => (await import('./commands/man-page.js')).manPageCommand as CommandModule,
};

const args = process.argv.slice(2);
try {
  if (!(await ranQuickly(args, path.dirname(fileURLToPath(import.meta.url))))) await (await buildCli(args)).parseAsync();
} catch (error) {
  reportFailure(error);
}

async function commandsFor(args: readonly string[]): Promise<CommandModule[]> {
  const name = args.find((arg) => !arg.startsWith('-'));
  const load = name === undefined ? undefined : COMMANDS[name];
  if (load && !args.includes('--help') && !args.includes('-h')) return [await load()];
  return Promise.all(Object.values(COMMANDS).map((loadOne) => loadOne()));
}

async function buildCli(args: string[]) {
  const { default: yargs } = await import('yargs');
  const cli = yargs(args)
  .scriptName('tideline')
  .usage('$0 <command>\n\nThin-provisioned qcow2 disks on shared block storage for KVM/libvirt hosts.');
  for (const command of await commandsFor(args)) cli.command(command);
  return cli
  .completion('completion', 'Print the bash completion script (the RPM installs it)')
  .demandCommand(1, 'name a command: lab, agent, spm, status, cluster, volume, snapshot, policy, doctor, hook, mailbox, lease, loop-domain or lvm-domain')
  .strict()
  .recommendCommands()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns ?? 80))
  .fail((message, error) => {
    if (error) throw error;
    throw new InvalidConfigError(`${message}; run 'tideline --help' for usage`);
  });
}
