import assert from 'node:assert/strict';
import { parseHostConfig } from '../../src/config/host-config.js';

describe('host configuration file', () => {
  it('reads key = value lines with comments into typed settings', () => {
    const config = parseHostConfig('# storage\nvg = sd1   # the shared VG\nmailbox = /dev/sd1/mailbox\nhost-id = 3\nchunk = 1G\n\nfree-target=512M\n');
    assert.deepEqual(config, { vg: 'sd1', mailbox: '/dev/sd1/mailbox', 'host-id': 3, chunk: 1024 ** 3, 'free-target': 512 * 1024 ** 2 });
  });

  it("reads the SPM's doorbell and the candidates' doorbells, IPv4, IPv6 and names", () => {
    const config = parseHostConfig('doorbell = 192.0.2.11:7797\nspm-doorbells = 192.0.2.11:7797, [2001:db8::12]:7797,spm3.example:7797\n');
    assert.deepEqual(config.doorbell, { host: '192.0.2.11', port: 7797 });
    assert.deepEqual(config['spm-doorbells'], [{ host: '192.0.2.11', port: 7797 }, { host: '2001:db8::12', port: 7797 }, { host: 'spm3.example', port: 7797 }]);
  });

  it('names the line of each mistake', () => {
    assert.throws(() => parseHostConfig('vg = sd1\ndoorbell = 7797\n', '/etc/t.conf'), /\/etc\/t\.conf:2: doorbell '7797' is not HOST:PORT/);
    assert.throws(() => parseHostConfig('spm-doorbells = a:1, b:99999\n', '/etc/t.conf'), /\/etc\/t\.conf:1: spm-doorbells 'b:99999' is not HOST:PORT/);
    assert.throws(() => parseHostConfig('spm-doorbells = a:1,\n', '/etc/t.conf'), /\/etc\/t\.conf:1: spm-doorbells '' is not HOST:PORT/);
    assert.throws(() => parseHostConfig('vg = sd1\nchunk = lots\n', '/etc/t.conf'), /^InvalidConfigError: \/etc\/t\.conf:2: chunk .*cannot read "lots" as a size/);
    assert.throws(() => parseHostConfig('vg = sd1\n\ncolour = blue\n', '/etc/t.conf'), /\/etc\/t\.conf:3: unknown setting 'colour'/);
    assert.throws(() => parseHostConfig('vg sd1\n', '/etc/t.conf'), /\/etc\/t\.conf:1: expected 'key = value'/);
    assert.throws(() => parseHostConfig('host-id = 1\nhost-id = 2\n', '/etc/t.conf'), /\/etc\/t\.conf:2: 'host-id' is already set on line 1/);
    assert.throws(() => parseHostConfig('host-id = 0\n', '/etc/t.conf'), /\/etc\/t\.conf:1: host-id/);
    assert.throws(() => parseHostConfig('vg = a\nloop-domain = /x\n', '/etc/t.conf'), /either vg or loop-domain/);
  });
});
