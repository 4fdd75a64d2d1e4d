import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseHostConfig } from '../../src/config/host-config.js';
import { checkHookReachesAgent, checkHookSpool, checkServiceAgreement, parseEnvironmentFile, settingsInArguments, spoolOfHookScript } from '../../src/doctor/service-agreement.js';
import { socketAnswers } from '../../src/util/unix-socket-line.js';

describe('doctor: the agent and the SPM see one host', () => {
  const config = parseHostConfig('vg = tideline_vg\nmailbox = /dev/tideline_vg/mailbox\nhost-id = 2\nlease = /dev/tideline_vg/leases\n');

  it('agrees when both services take everything from the configuration file', () => {
    const finding = checkServiceAgreement(config, parseEnvironmentFile('# units\nTIDELINE_AGENT_ARGS="--libvirt"\nTIDELINE_SPM_ARGS=""\n'));
    assert.deepEqual(finding, { check: 'agent and SPM agree', status: 'ok', detail: 'host id 2, mailbox /dev/tideline_vg/mailbox' });
  });

  it("names the setting, both values and where each comes from when a flag gives one service another host id", () => {
    const finding = checkServiceAgreement(config, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--libvirt"\nTIDELINE_SPM_ARGS="--host-id 1 --lease-backend sanlock"\n'));
    assert.equal(finding.status, 'fail');
    assert.match(finding.detail, /host-id: the agent has 2 \(the configuration file\), the SPM 1 \(--host-id in \/etc\/sysconfig\/tideline\)/);
    const both = checkServiceAgreement(config, parseEnvironmentFile("TIDELINE_AGENT_ARGS='--mailbox=/dev/other/mailbox'\nTIDELINE_SPM_ARGS=--vg=other_vg\n"));
    assert.match(both.detail, /mailbox: the agent has \/dev\/other\/mailbox .*vg: the agent has tideline_vg \(the configuration file\), the SPM other_vg/);
  });

  it('the same flag on both services agrees', () => {
    assert.equal(checkServiceAgreement(undefined, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--host-id 3"\nTIDELINE_SPM_ARGS="--host-id=3"')).status, 'ok');
  });

  it('property: arguments of any words never throw, and a flag given is read back', () => {
    fc.assert(fc.property(fc.array(fc.string()), fc.integer({ min: 1, max: 2000 }), (words, hostId) => {
      void settingsInArguments(words.join(' '));
      assert.equal(settingsInArguments(`${words.filter((word) => !/\s|host-id/.test(word)).join(' ')} --host-id ${hostId}`)['host-id'], String(hostId));
    }));
  });

  it('the hook reaches the agent: ok when both use one socket and it answers; a warning naming both when a flag moves the agent, or when nobody answers', async () => {
    const listening = new Set(['/run/tideline/agent.sock', '/run/custom.sock']);
    const answers = async (socket: string) => listening.has(socket);
    assert.deepEqual(await checkHookReachesAgent(config, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--libvirt"'), answers), { check: 'hook reaches the agent', status: 'ok', detail: 'the hook hands prepare to the agent on /run/tideline/agent.sock' });
    const moved = await checkHookReachesAgent(config, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--libvirt --control-socket /run/custom.sock"'), answers);
    assert.equal(moved.status, 'warn');
    assert.match(moved.detail, /the hook asks the agent on \/run\/tideline\/agent.sock \(the configuration file\), the agent listens on \/run\/custom.sock \(--control-socket in \/etc\/sysconfig\/tideline\)/);
    const configured = parseHostConfig('vg = tideline_vg\ncontrol-socket = /run/custom.sock\n');
    assert.equal((await checkHookReachesAgent(configured, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--control-socket=/run/custom.sock"'), answers)).status, 'ok');
    const silent = await checkHookReachesAgent(configured, new Map(), async () => false);
    assert.equal(silent.status, 'warn');
    assert.match(silent.detail, /no agent answers on \/run\/custom.sock/);
  });

  it('a socket nobody listens on does not answer', async () => {
    assert.equal(await socketAnswers('/nonexistent/tideline-agent.sock'), false);
  });

  it('the hook hands prepare to the agent without node: ok when the agent follows the spool the hook writes to; a warning saying why when not', async () => {
    const installed = "#!/bin/sh\nTIDELINE_NODE='/usr/bin/node'\nTIDELINE_HOOK_SPOOL_DEFAULT='/srv/tide spool'\n";
    assert.equal(spoolOfHookScript(installed), '/srv/tide spool');
    assert.equal(spoolOfHookScript('TIDELINE_HOOK_SPOOL_DEFAULT=/run/tideline/hook-events\n'), '/run/tideline/hook-events');
    const followed: string[] = [];
    const follows = async (spool: string) => {
      followed.push(spool);
      return spool === '/srv/tide spool';
    };
    const ok = await checkHookSpool(installed, parseEnvironmentFile(`TIDELINE_AGENT_ARGS="--libvirt --hook-spool=/srv/tide spool"`), follows);
    // systemd splits the arguments on blanks: a flag value with a space is cut, and doctor reads it as the agent would.
    assert.equal(ok.status, 'warn');
    assert.match(ok.detail, /the hook writes to \/srv\/tide spool, the agent follows \/srv\/tide /);
    const packaged = 'TIDELINE_HOOK_SPOOL_DEFAULT=/run/tideline/hook-events\n';
    const notRunning = await checkHookSpool(packaged, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--libvirt"'), follows);
    assert.deepEqual([notRunning.status, notRunning.detail], ['warn', 'no agent follows /run/tideline/hook-events (the agent is not running): every VM start with a thin disk starts node in the hook']);
    const noLibvirt = await checkHookSpool(undefined, new Map(), follows);
    assert.match(noLibvirt.detail, /the agent runs without --libvirt/);
    const following = await checkHookSpool(packaged, parseEnvironmentFile('TIDELINE_AGENT_ARGS="--libvirt"'), async () => true);
    assert.deepEqual([following.status, following.detail], ['ok', 'the agent follows /run/tideline/hook-events']);
    assert.ok(!followed.includes('/srv/tide'), 'a spool the two disagree on is not looked at');
  });
});
