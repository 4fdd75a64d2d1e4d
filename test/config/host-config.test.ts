import assert from 'node:assert/strict';
import { parseHostConfig } from '../../src/config/host-config.js';

describe('host configuration file', () => {
  it('reads key = value lines with comments into typed settings', () => {
    const config = parseHostConfig('# storage\nvg = sd1   # the shared VG\nmailbox = /dev/sd1/mailbox\nhost-id = 3\nchunk = 1G\n\nfree-target=512M\n');
    assert.deepEqual(config, { vg: 'sd1', mailbox: '/dev/sd1/mailbox', 'host-id': 3, chunk: 1024 ** 3, 'free-target': 512 * 1024 ** 2 });
  });

  it('names the line of each mistake', () => {
    assert.throws(() => parseHostConfig('vg = sd1\nchunk = lots\n', '/etc/t.conf'), /^InvalidConfigError: \/etc\/t\.conf:2: chunk .*cannot read "lots" as a size/);
    assert.throws(() => parseHostConfig('vg = sd1\n\ncolour = blue\n', '/etc/t.conf'), /\/etc\/t\.conf:3: unknown setting 'colour'/);
    assert.throws(() => parseHostConfig('vg sd1\n', '/etc/t.conf'), /\/etc\/t\.conf:1: expected 'key = value'/);
    assert.throws(() => parseHostConfig('host-id = 1\nhost-id = 2\n', '/etc/t.conf'), /\/etc\/t\.conf:2: 'host-id' is already set on line 1/);
    assert.throws(() => parseHostConfig('host-id = 0\n', '/etc/t.conf'), /\/etc\/t\.conf:1: host-id/);
    assert.throws(() => parseHostConfig('vg = a\nloop-domain = /x\n', '/etc/t.conf'), /either vg or loop-domain/);
  });
});
