#!/usr/bin/env node
/**
 * The node half of /etc/libvirt/hooks/qemu.d/tideline (hooks/qemu): the shell
 * script hands every event but `prepare begin` to the agent's spool itself and
 * runs this only where the domain XML must be read. It loads nothing but node's
 * own modules until it knows tideline is set up on this host, and hands the
 * work to the agent when one answers on the control socket (agent-prepare.ts).
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_CONTROL_SOCKET } from '../agent/control-socket-path.js';
import { readConfigLines } from '../config/config-lines.js';
import { prepareThroughAgent } from './agent-prepare.js';
import type { HookOutcome } from './hook.js';

const STDIN_LIMIT_BYTES = 16 * 1024 * 1024;
const CONFIG_FILE = process.env.TIDELINE_CONFIG ?? '/etc/tideline/tideline.conf';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > STDIN_LIMIT_BYTES) break;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * No agent took it: load the plugin and do it in this process (the slow path,
 * which a VM start waits for). Its LVM commands run through the light runner,
 * the same contract as execa's without loading execa, which alone costs
 * several times a node start.
 */
async function prepareHere(configText: string, domain: string, xml: string): Promise<HookOutcome> {
  const [{ parseHostConfig }, { prepareDomain }, { lightRunner }, { openHostPlugin }] = await Promise.all([import('../config/host-config.js'), import('./hook.js'), import('../util/light-runner.js'), import('../../plugins/open-host-plugin.js')]);
  const config = parseHostConfig(configText, CONFIG_FILE);
  return prepareDomain(domain, xml, config.vg, () => openHostPlugin(config, lightRunner));
}

async function main(): Promise<number> {
  const text = await readFile(CONFIG_FILE, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined; // tideline is not set up on this host
    throw error;
  });
  if (text === undefined) return 0;
  const { values } = readConfigLines(text, CONFIG_FILE);
  if (!values.vg && !values['loop-domain']) return 0;
  const [domain = '', operation = '', subOperation = ''] = process.argv.slice(2);
  if (operation !== 'prepare' || subOperation !== 'begin') return 0;
  const xml = await readStdin();
  const outcome =
    (await prepareThroughAgent(values['control-socket'] ?? DEFAULT_CONTROL_SOCKET, {
      domain,
      xml,
      ...(values.vg ? { vg: values.vg } : {}),
      ...(values['loop-domain'] ? { loopDomain: values['loop-domain'] } : {}),
    })) ?? (await prepareHere(text, domain, xml));
  if (outcome.message) process.stderr.write(`${outcome.message}\n`);
  return outcome.exitCode;
}

main().then(
  (exitCode) => (process.exitCode = exitCode),
  (error: unknown) => {
    // A broken tideline setup must not keep VMs from starting or stopping; say what is wrong.
    process.stderr.write(`tideline hook: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 0;
  },
);
