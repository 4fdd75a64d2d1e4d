import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { parseHostConfig } from '../../src/config/host-config.js';
import { builtCli } from './helpers/built-cli.js';

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
      '/usr/lib/tideline/dist/cli/tideline.cjs',
      '/usr/lib/tideline/dist/hook/main.cjs',
      '/usr/lib/tideline/node_modules/yargs/package.json',
      '/usr/share/doc/tideline/README.md',
      '/usr/share/man/man1/tideline.1.gz',
      '/usr/share/bash-completion/completions/tideline',
    ]) {
      assert.ok(files.has(file), `the package lacks ${file}`);
    }
    assert.ok(![...files].some((file) => file.includes('/node_modules/mocha/') || file.includes('/node_modules/typescript/')), 'development dependencies were packaged');
    const config = (await run('rpm', ['-qp', '--configfiles', rpmFile])).stdout;
    assert.match(config, /\/etc\/tideline\/tideline\.conf/);
  });

  it('passes rpmlint with no errors, and every warning left is one packaging/README.md explains', async () => {
    const linted = await run('rpmlint', ['-c', 'packaging/rpmlint.toml', rpmFile, 'packaging/tideline.spec']);
    const summary = /(\d+) errors, (\d+) warnings/.exec(linted.stdout);
    assert.ok(summary, linted.stdout + linted.stderr);
    assert.equal(summary[1], '0', `rpmlint errors:\n${linted.stdout.split('\n').filter((line) => / E: /.test(line)).join('\n')}`);
    const explained = await readFile('packaging/README.md', 'utf8');
    const warnings = new Set([...linted.stdout.matchAll(/ W: ([a-z-]+)/g)].map((match) => match[1]!));
    for (const warning of warnings) assert.ok(explained.includes(`\`${warning}`), `rpmlint warning ${warning} is not explained in packaging/README.md`);
  });

  it('ships a manual made from the help texts, and bash completion that completes commands', async () => {
    const extracted = path.join(dir, 'extracted');
    await mkdir(extracted, { recursive: true });
    const cpio = await execa('bash', ['-c', 'rpm2cpio "$1" | (cd "$2" && cpio -idm --quiet ./usr/share/man/man1/tideline.1.gz ./usr/share/bash-completion/completions/tideline)', 'extract', rpmFile, extracted], { reject: false });
    assert.equal(cpio.exitCode, 0, cpio.stderr);
    const manual = (await execa('bash', ['-c', 'gzip -dc "$1" | MANWIDTH=100 man -l - 2>/dev/null', 'man', path.join(extracted, 'usr/share/man/man1/tideline.1.gz')])).stdout;
    for (const section of ['NAME', 'SYNOPSIS', 'COMMANDS', 'FILES']) assert.match(manual, new RegExp(`^${section}`, 'm'));
    for (const command of ['tideline agent', 'tideline spm', 'tideline cluster', 'tideline volume', 'tideline doctor']) assert.ok(manual.includes(command), `the manual lacks ${command}`);
    assert.match(manual, /--free-target/, "the agent's options are in the manual");
    const completion = await readFile(path.join(extracted, 'usr/share/bash-completion/completions/tideline'), 'utf8');
    assert.match(completion, /complete -o bashdefault -o default -F _tideline_yargs_completions tideline/);
    const completed = await run(process.execPath, [builtCli(), '--get-yargs-completions', 'tideline', 'volume', '']);
    for (const action of ['create', 'activate', 'path', 'list']) assert.match(completed.stdout, new RegExp(`^${action}$`, 'm'));
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
    const help = await run(process.execPath, [path.join(root, 'usr/lib/tideline/dist/cli/tideline.cjs'), '--help']);
    assert.equal(help.exitCode, 0, help.stderr);
    for (const command of ['agent', 'spm', 'status', 'volume', 'policy', 'doctor', 'hook']) assert.match(help.stdout, new RegExp(`tideline ${command}`));
    assert.match(await readFile(path.join(root, 'usr/bin/tideline'), 'utf8'), /exec \/usr\/bin\/node \/usr\/lib\/tideline\/dist\/cli\/tideline\.cjs "\$@"/);

    // The shipped configuration is valid as installed.
    parseHostConfig(await readFile(path.join(root, 'etc/tideline/tideline.conf'), 'utf8'));

    // The hook points into the package and hands an event to a spool.
    const hook = path.join(root, 'etc/libvirt/hooks/qemu.d/tideline');
    const script = await readFile(hook, 'utf8');
    const entry = /^TIDELINE_HOOK_MAIN=(.*)$/m.exec(script)?.[1];
    assert.equal(entry, '/usr/lib/tideline/dist/hook/main.cjs');
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

  it('upgrades to a newer build: an edited configuration stays, the command and hook are the new ones, the units are reloaded and restarted', async () => {
    const version = JSON.parse(await readFile('package.json', 'utf8')).version as string;
    const [major, minor, patch] = version.split('.').map(Number);
    const newer = `${major}.${minor}.${patch! + 1}`;
    const built = await execa('bash', ['packaging/build-rpm.sh', path.join(dir, 'out-newer')], { reject: false, timeout: 8 * 60_000, env: { TIDELINE_RPM_VERSION: newer } });
    assert.equal(built.exitCode, 0, built.stderr);
    const newerRpm = built.stdout.trim();
    assert.match(path.basename(newerRpm), new RegExp(`^tideline-${newer.replaceAll('.', '\\.')}-1\\.noarch\\.rpm$`));

    // The scriptlets see a systemd host: a systemctl that records what it is asked.
    await mkdir(path.join(root, 'run/systemd/system'), { recursive: true });
    await mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await writeFile(path.join(root, 'usr/bin/systemctl'), '#!/bin/sh\necho "$*" >> /systemctl.log\n', { mode: 0o755 });
    // The scriptlets send systemctl's output to /dev/null, which a scratch root lacks.
    await mkdir(path.join(root, 'dev'), { recursive: true });
    await execa('mknod', ['-m', '666', path.join(root, 'dev/null'), 'c', '1', '3'], { reject: false });
    const config = path.join(root, 'etc/tideline/tideline.conf');
    await writeFile(config, 'loop-domain = /var/lib/tideline/domain\nhost-id = 7\n');

    const upgraded = await run('rpm', ['--root', root, '--nodeps', '-U', newerRpm]);
    assert.equal(upgraded.exitCode, 0, upgraded.stderr);
    assert.doesNotMatch(upgraded.stderr, /scriptlet failed/);
    assert.equal((await run('rpm', ['--root', root, '-q', 'tideline'])).stdout.trim(), `tideline-${newer}-1.noarch`);
    assert.equal(await readFile(config, 'utf8'), 'loop-domain = /var/lib/tideline/domain\nhost-id = 7\n', 'the edited configuration is kept as it was');
    for (const file of ['/etc/libvirt/hooks/qemu.d/tideline', '/usr/bin/tideline', '/usr/lib/tideline/dist/cli/tideline.cjs']) {
      assert.equal((await run('rpm', ['--root', root, '-qf', file])).stdout.trim(), `tideline-${newer}-1.noarch`, `${file} belongs to the new package`);
    }
    assert.equal((await run('rpm', ['--root', root, '-V', '--nodeps', '--nomtime', 'tideline'])).stdout.split('\n').filter((line) => line && !line.includes('/etc/tideline/tideline.conf')).join('\n'), '', 'every file of the new package is as packaged');
    const systemctl = await readFile(path.join(root, 'systemctl.log'), 'utf8');
    assert.match(systemctl, /daemon-reload/);
    assert.match(systemctl, /try-restart tideline-agent\.service tideline-spm\.service/);
    const help = await run(process.execPath, [path.join(root, 'usr/lib/tideline/dist/cli/tideline.cjs'), '--version']);
    assert.equal(help.stdout.trim(), newer, 'the installed command is the new one');
  });

  it('erasing keeps an edited configuration and removes the rest', async () => {
    const config = path.join(root, 'etc/tideline/tideline.conf');
    await writeFile(config, 'loop-domain = /var/lib/tideline/domain\n');
    const erased = await run('rpm', ['--root', root, '-e', 'tideline']);
    assert.equal(erased.exitCode, 0, erased.stderr);
    assert.equal(await readFile(`${config}.rpmsave`, 'utf8'), 'loop-domain = /var/lib/tideline/domain\n');
    await assert.rejects(stat(path.join(root, 'usr/lib/tideline/dist/cli/tideline.cjs')));
    await assert.rejects(stat(path.join(root, 'etc/libvirt/hooks/qemu.d/tideline')));
  });
});
