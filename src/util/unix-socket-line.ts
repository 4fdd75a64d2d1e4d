import net from 'node:net';

/**
 * One line to a unix socket and one line back, with a deadline over both: the
 * agent's control protocol, spoken by the `tideline` command, the libvirt hook
 * and `tideline doctor`. Only node's own modules, because the hook loads this
 * before anything else (src/hook/agent-prepare.ts).
 */
export type LineExchange =
  | { kind: 'reply'; line: string }
  /** Nothing accepted the connection: no such socket, nobody listening, no permission. */
  | { kind: 'unreachable'; message: string }
  | { kind: 'timeout' }
  /** The peer sent more than `limitBytes` without a newline, or closed without a word. */
  | { kind: 'no-reply' };

export function exchangeLine(socketPath: string, line: string, options: { timeoutMs: number; limitBytes?: number }): Promise<LineExchange> {
  const limitBytes = options.limitBytes ?? Number.POSITIVE_INFINITY;
  return new Promise((resolve) => {
    let received = '';
    let connected = false;
    let settled = false;
    const finish = (outcome: LineExchange) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), options.timeoutMs);
    const socket = net.createConnection(socketPath);
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      socket.write(line);
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\n');
      if (end >= 0) finish({ kind: 'reply', line: received.slice(0, end) });
      else if (received.length > limitBytes) finish({ kind: 'no-reply' });
    });
    // A peer that answers and closes without a newline still answered.
    socket.once('end', () => finish(received.length > 0 ? { kind: 'reply', line: received } : { kind: 'no-reply' }));
    socket.once('error', (error) => finish(connected ? { kind: 'no-reply' } : { kind: 'unreachable', message: error.message }));
  });
}

/** Whether something accepts a connection on a unix socket within `timeoutMs`. */
export function socketAnswers(socketPath: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection(socketPath);
    const done = (answer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
