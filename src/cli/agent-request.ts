import { encodeControlMessage, type ControlReply, type ControlRequest } from '../agent/control-protocol.js';
import { TideError } from '../errors.js';
import { exchangeLine } from '../util/unix-socket-line.js';

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
  const exchange = await exchangeLine(socketPath, encodeControlMessage(request), { timeoutMs: REQUEST_TIMEOUT_MS });
  switch (exchange.kind) {
    case 'reply':
      return JSON.parse(exchange.line) as ControlReply;
    case 'unreachable':
      throw new AgentUnreachableError(`cannot reach the tideline agent at ${socketPath} (${exchange.message}); is it running (systemctl status tideline-agent)?`);
    case 'timeout':
      throw new AgentUnreachableError(`the agent did not answer within ${REQUEST_TIMEOUT_MS / 60_000} minutes`);
    case 'no-reply':
      throw new AgentUnreachableError(`the tideline agent at ${socketPath} closed the connection without an answer; see its log (journalctl -u tideline-agent)`);
  }
}

export async function request(socketPath: string, message: ControlRequest): Promise<ControlReply & { ok: true }> {
  const reply = await askAgent(socketPath, message);
  if (!reply.ok) throw new VolumeRequestError(reply.code, reply.message);
  return reply;
}

