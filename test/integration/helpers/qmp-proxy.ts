import net from 'node:net';
import { rm } from 'node:fs/promises';

/**
 * A Unix-socket relay between a QMP client and QEMU that can cut the
 * connection the moment a given command passes through, as a QEMU crash or
 * restart would: the command is never delivered and never answered.
 */
export class QmpProxy {
  private server: net.Server | undefined;
  private cutOn: string | undefined;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  cuts = 0;

  constructor(readonly listenPath: string, private readonly targetPath: string) {}

  async start(): Promise<void> {
    await rm(this.listenPath, { force: true });
    this.server = net.createServer((client) => {
      const upstream = net.createConnection({ path: this.targetPath });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      upstream.on('data', (chunk) => client.write(chunk));
      client.on('data', (chunk) => {
        if (this.cutOn && chunk.toString().includes(`"execute":"${this.cutOn}"`)) {
          this.cutOn = undefined;
          this.cuts += 1;
          close();
          return;
        }
        upstream.write(chunk);
      });
      client.on('close', close);
      upstream.on('close', close);
      client.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.listenPath, resolve));
  }

  cutOnNext(command: string): void {
    this.cutOn = command;
  }

  async stop(): Promise<void> {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
