import type { StoragePlugin } from '../../plugins/types.js';

/**
 * The refresh an agent makes when it starts watching a thin drive, and
 * whether it changed this host's view. When it did, another host extended the
 * volume while nobody here watched (the source of a live migration, while this
 * host's agent was down), and a write that already found no space may only
 * have met the old size: the monitor then tries a resume before asking the SPM.
 */
export async function refreshAtAttach(plugin: StoragePlugin, volume: string): Promise<{ volumeBytes: number; grewUnseen: boolean }> {
  const seenBefore = await plugin.visibleBytes(volume);
  const volumeBytes = await plugin.refresh(volume);
  return { volumeBytes, grewUnseen: seenBefore !== undefined && volumeBytes > seenBefore };
}
