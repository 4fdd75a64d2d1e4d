import { chmod, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import type { Logger } from 'pino';
import { errorCode, errorMessage } from '../errors.js';
import type { HookOutcome } from '../hook/hook.js';
import { decodeControlRequest, encodeControlMessage, type ControlReply, type ControlRequest } from './control-protocol.js';

export interface VolumeService {
  create(volume: string, sizeBytes: number, virtualBytes: number): Promise<number>;
  createChild(volume: string, parent: string, sizeBytes: number): Promise<number>;
  /** Grows to an absolute size through the SPM and makes this host see it. */
  extend(volume: string, sizeBytes: number): Promise<number>;
  reduce(volume: string, freeTargetBytes: number): Promise<number>;
  reparent(volume: string, parent: string): Promise<void>;
  /** Has the volume's record brought up to its image (backing volume, virtual size): after a block job changed the chain. */
  followImage(volume: string): Promise<void>;
  /** Grows the volume's image to a virtual size: live when a VM here has it open, otherwise offline through the SPM; resolves with how. */
  resize(volume: string, virtualBytes: number): Promise<{ live: string | undefined }>;
  remove(volume: string): Promise<void>;
  /** Makes the volume usable on this host at its current size; its block device path and the size this host sees. */
  activate(volume: string): Promise<{ path: string; sizeBytes: number }>;
  deactivate(volume: string): Promise<void>;
  /** The libvirt hook's `prepare begin` for a domain, asked by the hook of this host; refused for another storage domain. */
  prepareDomain(request: { domain: string; xml: string; vg?: string; loopDomain?: string }): Promise<HookOutcome>;
}

/** Serves the control socket; root-only (mode 0600 from its creation), since it can delete volumes. */
export async function serveControl(socketPath: string, volumes: VolumeService, logger: Logger): Promise<net.Server> {
  await mkdir(path.dirname(socketPath), { recursive: true });
  await rm(socketPath, { force: true });
  const server = net.createServer((socket) => {
    const lines = readline.createInterface({ input: socket });
    lines.once('line', (line) => {
      void answer(decodeControlRequest(line)).then((reply) => socket.end(encodeControlMessage(reply)));
    });
    socket.on('error', () => undefined);
  });
  const answer = async (request: ControlRequest | { error: string }): Promise<ControlReply> => {
    if ('error' in request) return { ok: false, code: 'invalid-request', message: request.error };
    try {
      if (request.op === 'prepare-domain') {
        logger.info({ op: request.op, vm: request.domain }, 'libvirt hook asks to prepare a domain\'s volumes');
        return { ok: true, ...(await volumes.prepareDomain(request)) };
      }
      logger.info({ op: request.op, volume: request.volume, ...('parent' in request ? { parent: request.parent } : {}) }, 'volume request from the control socket');
      if (request.op === 'create') return { ok: true, sizeBytes: await volumes.create(request.volume, request.sizeBytes, request.virtualBytes) };
      if (request.op === 'reparent') {
        await volumes.reparent(request.volume, request.parent);
        return { ok: true };
      }
      if (request.op === 'resize') {
        const { live } = await volumes.resize(request.volume, request.virtualBytes);
        return { ok: true, ...(live ? { vm: live } : {}) };
      }
      if (request.op === 'reduce') return { ok: true, sizeBytes: await volumes.reduce(request.volume, request.freeTargetBytes) };
      if (request.op === 'extend') return { ok: true, sizeBytes: await volumes.extend(request.volume, request.sizeBytes) };
      if (request.op === 'create-child') return { ok: true, sizeBytes: await volumes.createChild(request.volume, request.parent, request.sizeBytes) };
      if (request.op === 'activate') return { ok: true, ...(await volumes.activate(request.volume)) };
      if (request.op === 'deactivate') {
        await volumes.deactivate(request.volume);
        return { ok: true };
      }
      await volumes.remove(request.volume);
      return { ok: true };
    } catch (error) {
      return { ok: false, code: errorCode(error), message: errorMessage(error) };
    }
  };
  // The socket is born 0600: with only chmod afterwards, another user could connect in between.
  const previousUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  } finally {
    process.umask(previousUmask);
  }
  await chmod(socketPath, 0o600);
  return server;
}
