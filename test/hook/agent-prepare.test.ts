import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { decodePrepareReply, prepareThroughAgent } from '../../src/hook/agent-prepare.js';

/** The hook's side of handing `prepare` to the agent: what it accepts as an answer, and when it gives up and does the work itself. */
describe('hook: prepare through the agent', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-hook-agent-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("relays the agent's outcome, message included; anything else means doing the work itself", () => {
    assert.deepEqual(decodePrepareReply('{"ok":true,"exitCode":0}'), { exitCode: 0 });
    assert.deepEqual(decodePrepareReply('{"ok":true,"exitCode":1,"message":"tideline: domain web cannot start"}'), { exitCode: 1, message: 'tideline: domain web cannot start' });
    for (const refused of ['{"ok":false,"code":"storage-domain-mismatch","message":"x"}', '{"ok":true}', '{"ok":true,"exitCode":-1}', '{"ok":true,"exitCode":1.5}', '{"ok":true,"exitCode":0,"message":7}', 'null', '', 'not json']) {
      assert.equal(decodePrepareReply(refused), undefined, refused);
    }
  });

  it('gives up at once when no agent listens, and after its timeout when one accepts but never answers (a hung agent)', async () => {
    const request = { domain: 'web', xml: '<domain/>', loopDomain: '/srv/lab' };
    assert.equal(await prepareThroughAgent(path.join(dir, 'nobody.sock'), request, 5_000), undefined);
    const silent = net.createServer(() => undefined);
    const socket = path.join(dir, 'silent.sock');
    await new Promise<void>((resolve) => silent.listen(socket, resolve));
    try {
      const started = Date.now();
      assert.equal(await prepareThroughAgent(socket, request, 200), undefined);
      const waited = Date.now() - started;
      assert.ok(waited >= 190 && waited < 2_000, `waited ${waited} ms`);
    } finally {
      silent.close();
    }
  });

  it('sends the domain, its XML and the storage domain in one line, and reads the answer line', async () => {
    const socket = path.join(dir, 'agent.sock');
    let received = '';
    const agent = net.createServer((connection) => {
      connection.setEncoding('utf8');
      connection.on('data', (chunk: string) => {
        received += chunk;
        if (received.endsWith('\n')) connection.end('{"ok":true,"exitCode":0}\n');
      });
    });
    await new Promise<void>((resolve) => agent.listen(socket, resolve));
    try {
      assert.deepEqual(await prepareThroughAgent(socket, { domain: 'web', xml: '<domain>\n</domain>', vg: 'tide' }), { exitCode: 0 });
      assert.deepEqual(JSON.parse(received), { op: 'prepare-domain', domain: 'web', xml: '<domain>\n</domain>', vg: 'tide' });
    } finally {
      agent.close();
    }
  });
});
