import { DEFAULT_CONTROL_SOCKET } from '../agent/control-socket-path.js';
import { DEFAULT_HOOK_SPOOL } from '../agent/spool-protocol.js';
import type { HostConfig } from '../config/host-config.js';
import type { Finding } from './checks.js';

/**
 * The agent and the SPM read one host configuration; the systemd units add
 * the flags in /etc/sysconfig/tideline, and a flag wins over the file. A
 * flag that gives one service another host id, mailbox or storage domain
 * than the other sees makes the host two hosts to the cluster: found here.
 */
export const DEFAULT_SYSCONFIG_FILE = '/etc/sysconfig/tideline';

type ServiceName = 'agent' | 'SPM';
const SETTINGS = ['host-id', 'mailbox', 'vg', 'domain'] as const;
type Setting = (typeof SETTINGS)[number];

/** `KEY="value"` lines of an EnvironmentFile; unquoted values too, `#` comments skipped. */
export function parseEnvironmentFile(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S*))\s*$/.exec(line);
    if (match) values.set(match[1]!, match[2] ?? match[3] ?? match[4] ?? '');
  }
  return values;
}

/** The value a service's arguments give a flag (`--host-id 2` or `--host-id=2`; the last one wins), as systemd splits `$VAR` on whitespace. */
export function flagInArguments(args: string, flag: string): string | undefined {
  const words = args.split(/\s+/).filter(Boolean);
  let found: string | undefined;
  words.forEach((word, index) => {
    if (word === `--${flag}` && words[index + 1] !== undefined) found = words[index + 1]!;
    else if (word.startsWith(`--${flag}=`)) found = word.slice(flag.length + 3);
  });
  return found;
}

/** The settings a service's arguments give. */
export function settingsInArguments(args: string): Partial<Record<Setting, string>> {
  const found: Partial<Record<Setting, string>> = {};
  for (const setting of SETTINGS) {
    const value = flagInArguments(args, setting);
    if (value !== undefined) found[setting] = value;
  }
  return found;
}

function fromConfig(config: HostConfig | undefined, setting: Setting): string | undefined {
  if (!config) return undefined;
  if (setting === 'host-id') return config['host-id'] === undefined ? undefined : String(config['host-id']);
  if (setting === 'domain') return config['loop-domain'];
  return config[setting];
}

export function checkServiceAgreement(config: HostConfig | undefined, environment: Map<string, string>, sysconfigFile = DEFAULT_SYSCONFIG_FILE): Finding {
  const flags: Record<ServiceName, Partial<Record<Setting, string>>> = {
    agent: settingsInArguments(environment.get('TIDELINE_AGENT_ARGS') ?? ''),
    SPM: settingsInArguments(environment.get('TIDELINE_SPM_ARGS') ?? ''),
  };
  const view = (service: ServiceName, setting: Setting) => {
    const flag = flags[service][setting];
    return flag !== undefined ? { value: flag, source: `--${setting} in ${sysconfigFile}` } : { value: fromConfig(config, setting), source: 'the configuration file' };
  };
  const disagreements: string[] = [];
  for (const setting of SETTINGS) {
    const agent = view('agent', setting);
    const spm = view('SPM', setting);
    if (agent.value !== spm.value) disagreements.push(`${setting}: the agent has ${agent.value ?? 'none'} (${agent.source}), the SPM ${spm.value ?? 'none'} (${spm.source})`);
  }
  if (disagreements.length > 0) {
    return { check: 'agent and SPM agree', status: 'fail', detail: `${disagreements.join('; ')}. One host has one id, one mailbox and one storage domain: set them in the configuration file only` };
  }
  const hostId = view('agent', 'host-id').value;
  return { check: 'agent and SPM agree', status: 'ok', detail: `host id ${hostId ?? 'none'}, mailbox ${view('agent', 'mailbox').value ?? 'none'}` };
}

/**
 * The hook hands a starting VM's `prepare` to the agent on the control socket
 * that tideline.conf names (src/hook/agent-prepare.ts); the agent listens
 * where its flags say. When the two differ, or no agent answers, every start
 * takes the slow path: the hook loads everything itself (about half a second
 * here, against a tenth through the agent). Nothing breaks, so a warning.
 */
export async function checkHookReachesAgent(config: HostConfig | undefined, environment: Map<string, string>, answers: (socket: string) => Promise<boolean>, sysconfigFile = DEFAULT_SYSCONFIG_FILE): Promise<Finding> {
  const check = 'hook reaches the agent';
  const hookSocket = config?.['control-socket'] ?? DEFAULT_CONTROL_SOCKET;
  const agentSocket = flagInArguments(environment.get('TIDELINE_AGENT_ARGS') ?? '', 'control-socket') ?? hookSocket;
  if (agentSocket !== hookSocket) {
    return { check, status: 'warn', detail: `the hook asks the agent on ${hookSocket} (the configuration file), the agent listens on ${agentSocket} (--control-socket in ${sysconfigFile}): every VM start takes the hook's slow path; set control-socket in the configuration file only` };
  }
  if (!(await answers(hookSocket))) {
    return { check, status: 'warn', detail: `no agent answers on ${hookSocket}: the hook activates and refreshes volumes itself (slower VM starts) until the agent runs` };
  }
  return { check, status: 'ok', detail: `the hook hands prepare to the agent on ${hookSocket}` };
}

/** The spool an installed hook script hands events to (`tideline hook install --spool` writes it into the script). */
export function spoolOfHookScript(script: string): string | undefined {
  const match = /^TIDELINE_HOOK_SPOOL_DEFAULT=(?:'([^']*)'|(\S+))$/m.exec(script);
  return match ? (match[1] ?? match[2]) : undefined;
}

/**
 * With an agent following the hook spool, the shell hook hands it `prepare`
 * without starting node (hooks/qemu): a VM start waits about 30 ms for the
 * hook instead of about 90 through the control socket. Both ends must name one
 * directory, and the agent follows it only with --libvirt.
 */
export async function checkHookSpool(hookScriptText: string | undefined, environment: Map<string, string>, follows: (spool: string) => Promise<boolean>, sysconfigFile = DEFAULT_SYSCONFIG_FILE): Promise<Finding> {
  const check = 'hook hands prepare to the agent without node';
  const hookSpool = (hookScriptText === undefined ? undefined : spoolOfHookScript(hookScriptText)) ?? DEFAULT_HOOK_SPOOL;
  const agentArgs = environment.get('TIDELINE_AGENT_ARGS') ?? '';
  const agentSpool = flagInArguments(agentArgs, 'hook-spool') ?? DEFAULT_HOOK_SPOOL;
  if (agentSpool !== hookSpool) {
    return { check, status: 'warn', detail: `the hook writes to ${hookSpool}, the agent follows ${agentSpool} (--hook-spool in ${sysconfigFile}): the agent misses domain events and every VM start with a thin disk starts node; install the hook with --spool ${agentSpool}` };
  }
  if (!(await follows(hookSpool))) {
    const why = /(^|\s)--libvirt(\s|=|$)/.test(agentArgs) ? 'the agent is not running' : `the agent runs without --libvirt (TIDELINE_AGENT_ARGS in ${sysconfigFile})`;
    return { check, status: 'warn', detail: `no agent follows ${hookSpool} (${why}): every VM start with a thin disk starts node in the hook` };
  }
  return { check, status: 'ok', detail: `the agent follows ${hookSpool}` };
}
