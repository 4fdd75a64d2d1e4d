import { readFile } from 'node:fs/promises';
import Table from 'cli-table3';
import type { CommandModule } from 'yargs';
import { openHostPlugin } from '../../../plugins/open-host-plugin.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { checkHook, checkLibvirt, checkMailbox, checkStorage, checkVersions, HOOK_FILE, type Finding } from '../../doctor/checks.js';
import { checkServiceAgreement, DEFAULT_SYSCONFIG_FILE, parseEnvironmentFile } from '../../doctor/service-agreement.js';
import { errorMessage } from '../../errors.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import { execaRunner } from '../../util/runner.js';

interface DoctorArguments {
  config: string;
  sysconfig: string;
  uri: string;
  hook: string;
  json: boolean;
}

export const doctorCommand: CommandModule<object, DoctorArguments> = {
  command: 'doctor',
  describe: 'Check this host: configuration, storage, mailbox, libvirt, hook, thin disks without error_policy=stop',
  builder: (yargs) =>
    yargs
      .option('config', { type: 'string', default: process.env.TIDELINE_CONFIG ?? DEFAULT_CONFIG_FILE })
      .option('sysconfig', { type: 'string', default: DEFAULT_SYSCONFIG_FILE, describe: "The units' extra arguments (TIDELINE_AGENT_ARGS, TIDELINE_SPM_ARGS)" })
      .option('uri', { type: 'string', default: DEFAULT_URI })
      .option('hook', { type: 'string', default: HOOK_FILE, describe: 'Where the libvirt hook should be' })
      .option('json', { type: 'boolean', default: false }),
  handler: async (argv) => {
    const findings: Finding[] = [];
    let config;
    try {
      config = await loadHostConfig(argv.config);
      findings.push(config ? { check: 'configuration', status: 'ok', detail: argv.config } : { check: 'configuration', status: 'fail', detail: `${argv.config} does not exist: write it (vg or loop-domain, mailbox, host-id)` });
    } catch (error) {
      findings.push({ check: 'configuration', status: 'fail', detail: errorMessage(error) });
    }
    let plugin;
    if (config && (config.vg || config['loop-domain'])) {
      const storage = await checkStorage(() => openHostPlugin(config, execaRunner));
      findings.push(storage.finding);
      plugin = storage.plugin;
      findings.push(await checkMailbox(config));
    } else if (config) {
      findings.push({ check: 'storage domain', status: 'fail', detail: `${argv.config} names no storage domain: set vg (or loop-domain)` });
    }
    if (config) {
      const environment = parseEnvironmentFile(await readFile(argv.sysconfig, 'utf8').catch(() => ''));
      findings.push(checkServiceAgreement(config, environment, argv.sysconfig));
      if (!config.lease && !/--lease(\s|=)/.test(environment.get('TIDELINE_SPM_ARGS') ?? '')) {
        findings.push({ check: 'SPM lease', status: 'warn', detail: `no lease volume for the SPM: set 'lease' (and for sanlock 'ids') in ${argv.config}` });
      }
    }
    findings.push(...(await checkLibvirt(new Virsh(execaRunner, argv.uri), plugin)));
    findings.push(await checkHook(argv.hook));
    findings.push(await checkVersions(execaRunner));

    if (argv.json) process.stdout.write(`${JSON.stringify(findings, null, 2)}\n`);
    else {
      const table = new Table({ head: ['check', 'status', 'detail'], style: { head: [], border: [] }, colWidths: [22, 8, 90], wordWrap: true });
      for (const finding of findings) table.push([finding.check, finding.status === 'ok' ? 'ok' : finding.status.toUpperCase(), finding.detail]);
      process.stdout.write(`${table.toString()}\n`);
    }
    if (findings.some((finding) => finding.status === 'fail')) process.exitCode = 1;
  },
};
