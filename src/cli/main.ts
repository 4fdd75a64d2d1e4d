#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { agentCommand } from './commands/agent.js';
import { labCommand } from './commands/lab.js';
import { loopDomainCommand } from './commands/loop-domain.js';
import { lvmDomainCommand } from './commands/lvm-domain.js';
import { statusCommand } from './commands/status.js';
import { leaseCommand, mailboxCommand } from './commands/mailbox.js';
import { spmCommand } from './commands/spm.js';
import { volumeCommand } from './commands/volume.js';
import { snapshotCommand } from './commands/snapshot.js';
import { hookCommand } from './commands/hook.js';
import { policyCommand } from './commands/policy.js';
import { doctorCommand } from './commands/doctor.js';
import { InvalidConfigError } from '../errors.js';
import { reportFailure } from './failure.js';

try {
  await buildCli().parseAsync();
} catch (error) {
  reportFailure(error);
}

function buildCli() {
  return yargs(hideBin(process.argv))
  .scriptName('tideline')
  .usage('$0 <command>\n\nThin-provisioned qcow2 disks on shared block storage for KVM/libvirt hosts.')
  .command(labCommand)
  .command(agentCommand)
  .command(statusCommand)
  .command(spmCommand)
  .command(volumeCommand)
  .command(snapshotCommand)
  .command(policyCommand)
  .command(doctorCommand)
  .command(hookCommand)
  .command(mailboxCommand)
  .command(leaseCommand)
  .command(loopDomainCommand)
  .command(lvmDomainCommand)
  .demandCommand(1, 'name a command: lab, agent, spm, status, volume, policy, doctor, hook, mailbox, lease, loop-domain or lvm-domain')
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
