import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkHook } from '../../src/doctor/checks.js';

describe('doctor: libvirt hook check', () => {
  let dir: string;
  let hook: string;
  let pidFile: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tideline-doctor-'));
    await mkdir(path.join(dir, 'hooks', 'qemu.d'), { recursive: true });
    hook = path.join(dir, 'hooks', 'qemu.d', 'tideline');
    pidFile = path.join(dir, 'libvirtd.pid');
    // PID 1 stands in for a libvirtd that started long before the hook was written.
    await writeFile(pidFile, '1\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('warns when the hook is missing or not executable', async () => {
    assert.match((await checkHook(hook, pidFile)).detail, /missing or not executable.*tideline hook install/);
    await writeFile(hook, '#!/bin/sh\n');
    assert.equal((await checkHook(hook, pidFile)).status, 'warn');
  });

  it('warns that libvirtd must restart when it started before any qemu hook existed', async () => {
    await writeFile(hook, '#!/bin/sh\n');
    await chmod(hook, 0o755);
    const finding = await checkHook(hook, pidFile);
    assert.equal(finding.status, 'warn');
    assert.match(finding.detail, /libvirtd \(pid 1\) started before it.*systemctl restart libvirtd/);
  });

  it('is content when a hook was already there when libvirtd started, or libvirtd is not running', async () => {
    await writeFile(hook, '#!/bin/sh\n');
    await chmod(hook, 0o755);
    const older = path.join(dir, 'hooks', 'qemu.d', 'other');
    await writeFile(older, '#!/bin/sh\n');
    await utimes(older, new Date('2020-01-01'), new Date('2020-01-01'));
    assert.equal((await checkHook(hook, pidFile)).status, 'ok');
    await rm(older);
    assert.equal((await checkHook(hook, path.join(dir, 'no-libvirtd.pid'))).status, 'ok');
  });
});
