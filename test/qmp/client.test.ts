import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { QmpClient } from '../../src/qmp/client.js';
import { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpTimeoutError } from '../../src/qmp/errors.js';
import { QmpSession } from '../../src/qmp/session.js';
import { systemClock } from '../../src/util/clock.js';

type Handler = (command: { execute: string; id: string; arguments?: unknown }, socket: net.Socket) => void;

/** A QMP peer on a real Unix socket, scripted per test. */
class FakeQemu {
  readonly sockets = new Set<net.Socket>();
  connections = 0;
  private server: net.Server | undefined;

  constructor(readonly socketPath: string, public handler: Handler, public greeting = true) {}

  async listen(): Promise<void> {
    this.server = net.createServer((socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      if (this.greeting) socket.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n');
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString();
        let index: number;
        while ((index = buffer.indexOf('\n')) !== -1) {
          const command = JSON.parse(buffer.slice(0, index));
          buffer = buffer.slice(index + 1);
          if (command.execute === 'qmp_capabilities') socket.write(`{"return": {}, "id": "${command.id}"}\r\n`);
          else this.handler(command, socket);
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.socketPath, resolve));
  }

  dropAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

describe('QMP client against a scripted QMP peer', () => {
  let dir: string;
  let qemu: FakeQemu;
  let client: QmpClient | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'tideline-qmp-'));
    qemu = new FakeQemu(path.join(dir, 'qmp.sock'), () => undefined);
    await qemu.listen();
  });
  afterEach(async () => {
    client?.close();
    await qemu.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('negotiates capabilities and matches replies to commands by id, in any order', async () => {
    const held: Array<{ id: string; socket: net.Socket; execute: string }> = [];
    qemu.handler = (command, socket) => {
      held.push({ id: command.id, socket, execute: command.execute });
      if (held.length === 2) for (const entry of held.reverse()) entry.socket.write(`{"return": "${entry.execute}", "id": "${entry.id}"}\r\n`);
    };
    client = new QmpClient(qemu.socketPath);
    await client.start();
    const [first, second] = await Promise.all([client.execute('query-status'), client.execute('query-block')]);
    assert.equal(first, 'query-status');
    assert.equal(second, 'query-block');
  });

  it('delivers events as typed events', async () => {
    client = new QmpClient(qemu.socketPath);
    await client.start();
    const received = new Promise((resolve) => client!.once('event', resolve));
    for (const socket of qemu.sockets) socket.write('{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}\r\n');
    assert.deepEqual(await received, { kind: 'event', event: 'STOP', data: {}, timestampMicros: 1_000_002 });
  });

  it('turns a QMP error reply into a QmpCommandError with class and description', async () => {
    qemu.handler = (command, socket) => socket.write(`{"error": {"class": "GenericError", "desc": "Cannot find device"}, "id": "${command.id}"}\r\n`);
    client = new QmpClient(qemu.socketPath);
    await client.start();
    await assert.rejects(client.execute('block-set-write-threshold', { 'node-name': 'x', 'write-threshold': 1 }), (error: unknown) => {
      assert.ok(error instanceof QmpCommandError);
      assert.equal(error.errorClass, 'GenericError');
      assert.equal(error.description, 'Cannot find device');
      assert.equal(error.code, 'qmp-command-error');
      return true;
    });
  });

  it('times a silent command out with QmpTimeoutError and ignores the late reply', async () => {
    const late: Array<() => void> = [];
    qemu.handler = (command, socket) => late.push(() => socket.write(`{"return": {}, "id": "${command.id}"}\r\n`));
    client = new QmpClient(qemu.socketPath);
    await client.start();
    const garbage = new Promise((resolve) => client!.once('garbage', resolve));
    await assert.rejects(client.execute('query-status', undefined, 50), QmpTimeoutError);
    late[0]!();
    await garbage;
    assert.equal(client.connected, true);
  });

  it('skips garbage lines from the peer and keeps working', async () => {
    qemu.handler = (command, socket) => socket.write(`this is not json\r\n{"return": 7, "id": "${command.id}"}\r\n`);
    client = new QmpClient(qemu.socketPath);
    await client.start();
    assert.equal(await client.execute('query-x'), 7);
  });

  it('fails a command in flight with QmpDisconnectedError when the socket closes, then reconnects', async () => {
    qemu.handler = (_command, socket) => socket.destroy();
    client = new QmpClient(qemu.socketPath, { reconnectInitialMs: 20 });
    await client.start();
    const disconnected = new Promise((resolve) => client!.once('disconnected', resolve));
    await assert.rejects(client.execute('query-status'), QmpDisconnectedError);
    await disconnected;
    await assert.rejects(client.execute('query-status'), QmpDisconnectedError, 'commands fail fast while disconnected');
    qemu.handler = (command, socket) => socket.write(`{"return": "again", "id": "${command.id}"}\r\n`);
    await client.waitConnected();
    assert.equal(await client.execute('query-status'), 'again');
    assert.equal(qemu.connections, 2);
  });

  it('keeps retrying with backoff while QEMU is away and connects when it is back', async () => {
    await qemu.close();
    client = new QmpClient(qemu.socketPath, { reconnectInitialMs: 10, reconnectMaxMs: 40 });
    const started = client.start();
    await new Promise((resolve) => setTimeout(resolve, 150));
    await rm(qemu.socketPath, { force: true });
    qemu = new FakeQemu(qemu.socketPath, (command, socket) => socket.write(`{"return": 1, "id": "${command.id}"}\r\n`));
    await qemu.listen();
    await started;
    assert.equal(await client.execute('query-status'), 1);
  });

  it('refuses a socket that does not greet like QMP', async () => {
    qemu.greeting = false;
    await assert.rejects(QmpSession.open(qemu.socketPath, systemClock, 100), QmpProtocolError);
  });

  it('closes cleanly: pending commands fail, no reconnect happens', async () => {
    qemu.handler = () => undefined;
    client = new QmpClient(qemu.socketPath, { reconnectInitialMs: 10 });
    await client.start();
    const pending = client.execute('query-status');
    client.close();
    await assert.rejects(pending, QmpDisconnectedError);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(qemu.connections, 1);
  });
});
