export { QmpClient, type QmpClientOptions, DEFAULT_COMMAND_TIMEOUT_MS } from './client.js';
export { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpTimeoutError } from './errors.js';
export { encodeCommand, parseLine, QmpDecoder, LineSplitter, type Garbage } from './framing.js';
export type { QmpEvent, QmpGreeting, QmpMessage } from './messages.js';
