import assert from 'node:assert/strict';
import { parseLdd } from '../../src/lab/storage-host-image.js';

describe('ldd output', () => {
  it('lists resolved libraries and the loader, and names a missing library', () => {
    const output = '\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n';
    assert.deepEqual(parseLdd('/sbin/lvm', output), ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
    assert.throws(() => parseLdd('/usr/sbin/qemu-ga', '\tliburing.so.2 => not found\n'), /qemu-ga needs liburing.so.2/);
  });
});
