import { readFile } from 'node:fs/promises';
import Table from 'cli-table3';
import type { CommandModule } from 'yargs';
import { openHostPlugin } from '../../../plugins/open-host-plugin.js';
import { DEFAULT_CONFIG_FILE, loadHostConfig } from '../../config/host-config.js';
import { checkDoorbell, checkHook, checkLibvirt, checkLibvirtSocket, checkMailbox, checkStorage, checkVersions, HOOK_FILE, type Finding } from '../../doctor/checks.js';
import type { HostConfig } from '../../config/host-config.js';
import { leaseSource, observeCluster } from '../../cluster/cluster-reader.js';
import { checkHookReachesAgent, checkHookSpool, checkServiceAgreement, DEFAULT_SYSCONFIG_FILE, parseEnvironmentFile } from '../../doctor/service-agreement.js';
import { agentFollowsSpool } from '../../agent/spool-protocol.js';
import { socketAnswers } from '../../util/unix-socket-line.js';
import { errorMessage } from '../../errors.js';
import { DEFAULT_URI, Virsh } from '../../libvirt/virsh.js';
import { DirectLibvirt } from '../../libvirt/remote/direct-libvirt.js';
import { execaRunner } from '../../util/runner.js';

interface DoctorArguments {
  config: string;
  sysconfig: string;
  uri: string;
  hook: string;
  json: boolean;
}

/** Is an SPM serving? Two reads of the shared storage (`tideline cluster`), a little over two lease renewals apart. */
async function checkSpmServing(config: HostConfig): Promise<Finding> {
  const check = 'SPM serving';
  try {
    const sanlock = config['lease-backend'] === 'sanlock';
    if (sanlock && !config.ids) return { check, status: 'fail', detail: "lease-backend is sanlock but no 'ids' (the lockspace volume) is set" };
    const lease = leaseSource({ lease: config.lease!, backend: sanlock ? 'sanlock' : 'storage', ...(config.ids ? { ids: config.ids } : {}), ...(config.lockspace ? { lockspace: config.lockspace } : {}) }, execaRunner);
    const view = await observeCluster(config.mailbox!, lease, SPM_OBSERVE_SECONDS);
    if (!view.spm) return { check, status: 'fail', detail: 'no host holds the SPM lease: no extension can be served; is tideline-spm running on any host (systemctl status tideline-spm)?' };
    // sanlock renews every 20 s, longer than this look: its holding the resource is the answer.
    if (!view.spm.serving && !sanlock) return { check, status: 'fail', detail: `host ${view.spm.hostId} holds the SPM lease but did not renew it for ${SPM_OBSERVE_SECONDS} s: stopped or stalled; another host takes over once it expires` };
    return { check, status: 'ok', detail: `host ${view.spm.hostId}${view.spm.sinceMs ? ` since ${new Date(view.spm.sinceMs).toISOString()}` : ''}; ${view.hosts.filter((host) => host.alive).length} hosts alive ('tideline cluster' for all)` };
  } catch (error) {
    return { check, status: 'fail', detail: `cannot read the mailbox or the lease: ${errorMessage(error)}` };
  }
}

const SPM_OBSERVE_SECONDS = 2.5;

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
      findings.push(checkDoorbell(config));
    } else if (config) {
      findings.push({ check: 'storage domain', status: 'fail', detail: `${argv.config} names no storage domain: set vg (or loop-domain)` });
    }
    if (config) {
      const environment = parseEnvironmentFile(await readFile(argv.sysconfig, 'utf8').catch(() => ''));
      findings.push(checkServiceAgreement(config, environment, argv.sysconfig));
      findings.push(await checkHookReachesAgent(config, environment, socketAnswers, argv.sysconfig));
      findings.push(await checkHookSpool(await readFile(argv.hook, 'utf8').catch(() => undefined), environment, agentFollowsSpool, argv.sysconfig));
      if (!config.lease && !/--lease(\s|=)/.test(environment.get('TIDELINE_SPM_ARGS') ?? '')) {
        findings.push({ check: 'SPM lease', status: 'warn', detail: `no lease volume for the SPM: set 'lease' (and for sanlock 'ids') in ${argv.config}` });
      }
      if (config.mailbox && config.lease) findings.push(await checkSpmServing(config));
    }
    const libvirtFindings = await checkLibvirt(new Virsh(execaRunner, argv.uri), plugin);
    findings.push(...libvirtFindings);
    if (libvirtFindings[0]?.status === 'ok') findings.push(await checkLibvirtSocket(new DirectLibvirt(argv.uri)));
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
