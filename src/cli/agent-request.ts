import net from 'node:net';
import readline from 'node:readline';
import { encodeControlMessage, type ControlReply, type ControlRequest } from '../agent/control-protocol.js';
import { TideError } from '../errors.js';

class AgentUnreachableError extends TideError {
  readonly code = 'agent-unreachable';
}

class VolumeRequestError extends TideError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Create and delete go through this host's agent (its mailbox slot has one writer); every request waits for the SPM's answer. */
const REQUEST_TIMEOUT_MS = 30 * 60_000;

async function askAgent(socketPath: string, request: ControlRequest): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const timer = setTimeout(() => socket.destroy(new AgentUnreachableError(`the agent did not answer within ${REQUEST_TIMEOUT_MS / 60_000} minutes`)), REQUEST_TIMEOUT_MS);
    socket.once('connect', () => {
      socket.write(encodeControlMessage(request));
      const lines = readline.createInterface({ input: socket });
      lines.on('error', () => undefined); // the socket's own error handler reports it
      lines.once('line', (line) => {
        clearTimeout(timer);
        socket.end();
        resolve(JSON.parse(line) as ControlReply);
      });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error instanceof TideError ? error : new AgentUnreachableError(`cannot reach the tideline agent at ${socketPath} (${error.message}); is it running (systemctl status tideline-agent)?`));
    });
  });
}

export async function request(socketPath: string, message: ControlRequest): Promise<ControlReply & { ok: true }> {
  const reply = await askAgent(socketPath, message);
  if (!reply.ok) throw new VolumeRequestError(reply.code, reply.message);
  return reply;
}

