import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { serveControl, type VolumeService } from '../../src/agent/control-server.js';
import { HookSpool } from '../../src/agent/hook-spool.js';
import { silentLogger } from '../../src/log/logger.js';

/**
 * The agent's control socket and hook spool against a real unprivileged user
 * (nobody): neither lets anyone but root create, delete, extend or reduce a
 * volume, or make the agent rescan. The directory they live in is opened to
 * everyone here, so only their own permissions stand in the way.
 */
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const CONNECT = `
const socket = require('node:net').createConnection(process.argv[1]);
socket.on('connect', () => { socket.write(JSON.stringify({ op: 'delete', volume: 'victim' }) + '\\n'); socket.on('data', (data) => { process.stdout.write(String(data)); socket.end(); }); });
socket.on('error', (error) => { process.stdout.write(error.code); });
`;

describe('control socket and hook spool: root only', function () {
  this.timeout(20_000);
  let dir: string;
  const calls: string[] = [];
  const volumes: VolumeService = {
    create: async (volume) => { calls.push(`create ${volume}`); return 1; },
    createChild: async (volume) => { calls.push(`create-child ${volume}`); return 1; },
    extend: async (volume) => { calls.push(`extend ${volume}`); return 1; },
    reduce: async (volume) => { calls.push(`reduce ${volume}`); return 1; },
    reparent: async (volume) => void calls.push(`reparent ${volume}`),
    followImage: async (volume) => void calls.push(`follow image ${volume}`),
    resize: async (volume) => { calls.push(`resize ${volume}`); return { live: undefined }; },
    remove: async (volume) => void calls.push(`delete ${volume}`),
    activate: async (volume) => { calls.push(`activate ${volume}`); return { path: '/dev/null', sizeBytes: 1 }; },
    deactivate: async (volume) => void calls.push(`deactivate ${volume}`),
    prepareDomain: async (request) => { calls.push(`prepare ${request.domain}`); return { exitCode: 0 }; },
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-control-'));
    await chmod(dir, 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const asNobody = (command: string, args: string[]) => execa('setpriv', [...NOBODY, command, ...args], { reject: false, timeout: 10_000 });

  it('is created 0600: an unprivileged user cannot connect, so cannot delete (the same check lets it in once the socket is opened to everyone)', async () => {
    const socket = path.join(dir, 'agent.sock');
    const server = await serveControl(socket, volumes, silentLogger);
    try {
      assert.equal((await stat(socket)).mode & 0o777, 0o600);
      const refused = await asNobody(process.execPath, ['-e', CONNECT, socket]);
      assert.equal(refused.stdout, 'EACCES', refused.stderr);
      assert.deepEqual(calls, []);
      // The check can fail: the same socket opened to everyone lets nobody in.
      await chmod(socket, 0o666);
      const opened = await asNobody(process.execPath, ['-e', CONNECT, socket]);
      assert.match(opened.stdout, /"ok":true/);
      assert.deepEqual(calls, ['delete victim']);
    } finally {
      server.close();
    }
  });

  it('the hook spool is 0700: an unprivileged user cannot drop an event into it', async () => {
    const spool = path.join(dir, 'hook-events');
    let rescans = 0;
    const watcher = await HookSpool.watch(spool, async () => void (rescans += 1), silentLogger);
    try {
      assert.equal((await stat(spool)).mode & 0o777, 0o700);
      const write = await asNobody('sh', ['-c', 'printf "web\\nstarted\\nbegin\\n" > "$1/1.event"', 'sh', spool]);
      assert.notEqual(write.exitCode, 0);
      assert.match(write.stderr, /Permission denied/);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(rescans, 0);
    } finally {
      await watcher.close();
    }
  });
});
