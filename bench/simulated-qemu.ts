import net from 'node:net';
import readline from 'node:readline';
import { MiB } from '../src/util/sizes.js';

/**
 * Many QEMUs for the agent-scale figure: each a Unix socket speaking real QMP
 * (greeting, capabilities, query-block, query-blockstats, write thresholds,
 * query-status, BLOCK_WRITE_THRESHOLD events) for one qcow2 drive whose
 * "file" is a volume of the agent's loop domain. A writing VM moves its
 * high-water mark up and fires the threshold event when it crosses it.
 */
export class SimulatedQemu {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private highWater = 0;
  private threshold = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly socketPath: string,
    private readonly volumePath: string,
  ) {}

  async listen(): Promise<void> {
    this.server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve) => this.server!.listen(this.socketPath, resolve));
  }

  /** Writes `mibPerSecond` until stopped, in 100 ms steps. */
  startWriting(mibPerSecond: number): void {
    this.timer = setInterval(() => {
      const before = this.highWater;
      this.highWater += (mibPerSecond * MiB) / 10;
      if (this.threshold > 0 && before <= this.threshold && this.highWater > this.threshold) {
        const crossed = this.threshold;
        this.threshold = 0; // QEMU disarms a threshold when it fires
        this.broadcast({ event: 'BLOCK_WRITE_THRESHOLD', data: { 'node-name': 'vda-storage', 'write-threshold': crossed, 'amount-exceeded': this.highWater - crossed }, timestamp: { seconds: 0, microseconds: 0 } });
      }
    }, 100);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } })}\r\n`);
    const lines = readline.createInterface({ input: socket });
    // readline re-emits the socket's errors (EPIPE when the agent hangs up first): the agent side going away is normal here.
    lines.on('error', () => undefined);
    lines.on('line', (line) => {
      let command: { execute?: string; arguments?: Record<string, unknown>; id?: unknown };
      try {
        command = JSON.parse(line);
      } catch {
        return;
      }
      if (socket.writable) socket.write(`${JSON.stringify({ return: this.answer(command.execute ?? '', command.arguments ?? {}), id: command.id })}\r\n`);
    });
  }

  private answer(command: string, args: Record<string, unknown>): unknown {
    switch (command) {
      case 'query-block':
        return [{ device: '', qdev: '/machine/peripheral/vda/virtio-backend', 'io-status': 'ok', inserted: { 'node-name': 'vda-format', file: this.volumePath, drv: 'qcow2', image: { 'virtual-size': 64 * 1024 * MiB, 'cluster-size': 65536, format: 'qcow2' } } }];
      case 'query-blockstats':
        return [{ 'node-name': 'vda-format', stats: {}, parent: { 'node-name': 'vda-storage', stats: { wr_highest_offset: this.highWater } } }];
      case 'block-set-write-threshold':
        this.threshold = Number(args['write-threshold'] ?? 0);
        return {};
      case 'query-status':
        return { status: 'running', running: true };
      default:
        return {};
    }
  }

  private broadcast(message: unknown): void {
    for (const socket of this.sockets) socket.write(`${JSON.stringify(message)}\r\n`);
  }
}
