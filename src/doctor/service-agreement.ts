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

/** The settings a service's arguments give (`--host-id 2` or `--host-id=2`), as systemd splits `$VAR` on whitespace. */
export function settingsInArguments(args: string): Partial<Record<Setting, string>> {
  const words = args.split(/\s+/).filter(Boolean);
  const found: Partial<Record<Setting, string>> = {};
  words.forEach((word, index) => {
    for (const setting of SETTINGS) {
      if (word === `--${setting}` && words[index + 1] !== undefined) found[setting] = words[index + 1]!;
      else if (word.startsWith(`--${setting}=`)) found[setting] = word.slice(setting.length + 3);
    }
  });
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
