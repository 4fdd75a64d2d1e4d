import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { parseHostConfig } from '../../src/config/host-config.js';

/**
 * The RPM, built by a real rpmbuild from packaging/tideline.spec and installed
 * with rpm into a scratch root (busybox as the root's /bin/sh, so the
 * package's scriptlets really run): the files land where the units, the hook
 * and the command expect each other, the installed command runs, the units
 * pass systemd-analyze, and erasing keeps an edited configuration.
 */
const run = (command: string, args: string[], timeout = 120_000) => execa(command, args, { reject: false, timeout });

describe('RPM package (rpmbuild, rpm --root)', function () {
  this.timeout(10 * 60_000);
  let dir: string;
  let root: string;
  let rpmFile: string;

  before(async () => {
    dir = await mkdtemp('/var/tmp/tideline-test-rpm-');
    root = path.join(dir, 'root');
    const built = await run('bash', ['packaging/build-rpm.sh', path.join(dir, 'out')], 8 * 60_000);
    assert.equal(built.exitCode, 0, built.stderr);
    rpmFile = built.stdout.trim();
    assert.match(path.basename(rpmFile), /^tideline-\d+\.\d+\.\d+-1\.noarch\.rpm$/);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('declares what a hypervisor needs and holds every piece of the product', async () => {
    const requires = (await run('rpm', ['-qp', '--requires', rpmFile])).stdout;
    for (const need of ['nodejs >= 20', 'qemu-img', 'lvm2', 'libvirt-daemon-driver-qemu']) assert.ok(requires.includes(need), `missing Requires: ${need}`);
    const files = new Set((await run('rpm', ['-qpl', rpmFile])).stdout.split('\n'));
    for (const file of [
      '/usr/bin/tideline',
      '/etc/libvirt/hooks/qemu.d/tideline',
      '/usr/lib/systemd/system/tideline-agent.service',
      '/usr/lib/systemd/system/tideline-spm.service',
      '/etc/tideline/tideline.conf',
      '/etc/sysconfig/tideline',
      '/usr/lib/tideline/dist/src/cli/main.js',
      '/usr/lib/tideline/dist/src/hook/main.js',
      '/usr/lib/tideline/node_modules/yargs/package.json',
      '/usr/share/doc/tideline/README.md',
    ]) {
      assert.ok(files.has(file), `the package lacks ${file}`);
    }
    assert.ok(![...files].some((file) => file.includes('/node_modules/mocha/') || file.includes('/node_modules/typescript/')), 'development dependencies were packaged');
    const config = (await run('rpm', ['-qp', '--configfiles', rpmFile])).stdout;
    assert.match(config, /\/etc\/tideline\/tideline\.conf/);
  });

  it('installs into a root with its scriptlets run; the command, hook and units work from there', async () => {
    await mkdir(path.join(root, 'bin'), { recursive: true });
    await copyFile('/bin/busybox', path.join(root, 'bin', 'sh'));
    assert.equal((await run('rpm', ['--root', root, '--initdb'])).exitCode, 0);
    const installed = await run('rpm', ['--root', root, '--nodeps', '-i', rpmFile]);
    assert.equal(installed.exitCode, 0, installed.stderr);
    assert.doesNotMatch(installed.stderr, /scriptlet failed/);
    assert.match((await run('rpm', ['--root', root, '-q', 'tideline'])).stdout, /^tideline-/);

    // The command, run by node from the installed tree.
    const help = await run(process.execPath, [path.join(root, 'usr/lib/tideline/dist/src/cli/main.js'), '--help']);
    assert.equal(help.exitCode, 0, help.stderr);
    for (const command of ['agent', 'spm', 'status', 'volume', 'policy', 'doctor', 'hook']) assert.match(help.stdout, new RegExp(`tideline ${command}`));
    assert.match(await readFile(path.join(root, 'usr/bin/tideline'), 'utf8'), /exec \/usr\/bin\/node \/usr\/lib\/tideline\/dist\/src\/cli\/main\.js "\$@"/);

    // The shipped configuration is valid as installed.
    parseHostConfig(await readFile(path.join(root, 'etc/tideline/tideline.conf'), 'utf8'));

    // The hook points into the package and hands an event to a spool.
    const hook = path.join(root, 'etc/libvirt/hooks/qemu.d/tideline');
    const script = await readFile(hook, 'utf8');
    const entry = /^TIDELINE_HOOK_MAIN=(.*)$/m.exec(script)?.[1];
    assert.equal(entry, '/usr/lib/tideline/dist/src/hook/main.js');
    await stat(path.join(root, entry));
    const spool = path.join(dir, 'spool');
    await mkdir(spool);
    const event = await execa(hook, ['web', 'started', 'begin', '-'], { reject: false, timeout: 10_000, env: { TIDELINE_HOOK_SPOOL: spool } });
    assert.equal(event.exitCode, 0, event.stderr);
    const files = await readdir(spool);
    assert.equal(files.length, 1);
    assert.equal(await readFile(path.join(spool, files[0]!), 'utf8'), 'web\nstarted\nbegin\n');

    // systemd's own verdict on the units, with ExecStart pointed into the root.
    const units = path.join(dir, 'units');
    await mkdir(units);
    for (const unit of ['tideline-agent.service', 'tideline-spm.service']) {
      const text = await readFile(path.join(root, 'usr/lib/systemd/system', unit), 'utf8');
      assert.match(text, /^ExecStart=\/usr\/bin\/tideline /m);
      await writeFile(path.join(units, unit), text.replaceAll('/usr/bin/tideline', path.join(root, 'usr/bin/tideline')));
    }
    const verified = await run('systemd-analyze', ['verify', path.join(units, 'tideline-agent.service'), path.join(units, 'tideline-spm.service')]);
    assert.equal(verified.exitCode, 0, verified.stderr);
    assert.equal(verified.stderr.trim(), '', `systemd-analyze complains:\n${verified.stderr}`);
  });

  it('erasing keeps an edited configuration and removes the rest', async () => {
    const config = path.join(root, 'etc/tideline/tideline.conf');
    await writeFile(config, 'loop-domain = /var/lib/tideline/domain\n');
    const erased = await run('rpm', ['--root', root, '-e', 'tideline']);
    assert.equal(erased.exitCode, 0, erased.stderr);
    assert.equal(await readFile(`${config}.rpmsave`, 'utf8'), 'loop-domain = /var/lib/tideline/domain\n');
    await assert.rejects(stat(path.join(root, 'usr/lib/tideline/dist/src/cli/main.js')));
    await assert.rejects(stat(path.join(root, 'etc/libvirt/hooks/qemu.d/tideline')));
  });
});
