/**
 * What tideline learns about a domain from libvirt, the same whether virsh
 * printed it or the daemon sent it over its socket.
 */
export interface DomainState {
  state: string;
  reason: string;
}

export interface BlockStats {
  target: string;
  path: string | undefined;
  backingIndex: number | undefined;
  allocation: number;
  physical: number;
  /** The disk's virtual size as the guest sees it. */
  capacity: number;
  threshold: number | undefined;
}

/** Block statistics from their fields ("block.0.name" -> "vda"), as virsh prints them or as libvirt sends them over its socket. */
export function blockStatsFromFields(fields: ReadonlyMap<string, string | number | boolean>): BlockStats[] {
  const stats: BlockStats[] = [];
  for (let index = 0; fields.has(`block.${index}.name`); index += 1) {
    const get = (key: string) => {
      const value = fields.get(`block.${index}.${key}`);
      return value === undefined ? undefined : String(value);
    };
    const backingIndex = get('backingIndex');
    const threshold = get('threshold');
    stats.push({
      target: get('name')!,
      path: get('path'),
      backingIndex: backingIndex === undefined ? undefined : Number(backingIndex),
      allocation: Number(get('allocation') ?? 0),
      physical: Number(get('physical') ?? 0),
      capacity: Number(get('capacity') ?? 0),
      threshold: threshold === undefined ? undefined : Number(threshold),
    });
  }
  return stats;
}
