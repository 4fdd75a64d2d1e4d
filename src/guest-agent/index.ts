export { GuestAgentClient } from './client.js';
export { GuestAgentCommandError, GuestAgentError } from './errors.js';
export { guestRunner, type GuestRunnerOptions } from './guest-runner.js';
