/**
 * Where the agent's control socket is unless configured otherwise. A module of
 * its own, without the protocol's schema: the libvirt hook reads it, and must
 * not load zod to do so (it runs on every domain start).
 */
export const DEFAULT_CONTROL_SOCKET = '/run/tideline/agent.sock';
