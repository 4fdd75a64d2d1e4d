import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeCpio, encodeCpio, type CpioEntry } from '../../src/lab/cpio.js';

describe('cpio newc encoder', () => {
  it('writes directories, files, symlinks and device nodes that read back the same', () => {
    const entries: CpioEntry[] = [
      { kind: 'directory', path: '/dev' },
      { kind: 'char-device', path: 'dev/console', major: 5, minor: 1 },
      { kind: 'file', path: 'init', data: new TextEncoder().encode('#!/bin/sh\n'), mode: 0o755 },
      { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    ];
    const decoded = decodeCpio(encodeCpio(entries));
    assert.deepEqual(decoded.map((entry) => entry.name), ['dev', 'dev/console', 'init', 'bin/sh']);
    assert.equal(decoded[0]!.mode, 0o040755);
    assert.equal(decoded[1]!.mode & 0o170000, 0o020000);
    assert.deepEqual([decoded[1]!.rdevMajor, decoded[1]!.rdevMinor], [5, 1]);
    assert.equal(decoded[2]!.mode, 0o100755);
    assert.equal(new TextDecoder().decode(decoded[2]!.data), '#!/bin/sh\n');
    assert.equal(new TextDecoder().decode(decoded[3]!.data), 'busybox');
  });

  it('property: every file comes back byte for byte and the archive is 4-byte aligned', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ name: fc.stringMatching(/^[a-z][a-z0-9_.]{0,30}$/), data: fc.uint8Array({ maxLength: 300 }) }), { selector: (entry) => entry.name, maxLength: 10 }),
        (files) => {
          const archive = encodeCpio(files.map((file) => ({ kind: 'file', path: file.name, data: file.data })));
          assert.equal(archive.length % 4, 0);
          const decoded = decodeCpio(archive);
          assert.deepEqual(decoded.map((entry) => [entry.name, Buffer.from(entry.data).toString('hex')]), files.map((file) => [file.name, Buffer.from(file.data).toString('hex')]));
        },
      ),
    );
  });
});
