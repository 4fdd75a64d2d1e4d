import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { builtCli } from './helpers/built-cli.js';

/**
 * `tideline policy show` as an admin runs it (the built CLI, real virsh),
 * against libvirt's test driver loaded from a file: domains with tideline
 * metadata in the form libvirt writes back, in forms only the full XML parser
 * reads, broken, and absent. No libvirtd is needed.
 */
const NAMESPACE = 'https://tideline.dev/xmlns/policy/1';

function testDomain(name: string, metadata: string): string {
  return `<domain type='test'><name>${name}</name><memory>65536</memory><os><type>hvm</type></os>${metadata ? `<metadata>${metadata}</metadata>` : ''}</domain>`;
}

const NODE_XML = `<node>
${testDomain('web', `<tl:thin xmlns:tl="${NAMESPACE}" chunk="268435456" free-target="128M"><tl:drive target="vdb" enabled="no" max-size="10G"/></tl:thin>`)}
${testDomain('by-hand', `<tl:thin xmlns:tl="${NAMESPACE}" chunk="1G"><!-- set by hand --><tl:drive target="vda" enabled="yes"/></tl:thin>`)}
${testDomain('broken', `<tl:thin xmlns:tl="${NAMESPACE}" chunk="lots"/>`)}
${testDomain('plain', '')}
</node>`;

/**
 * Records every module the CLI loads, to show which libraries a command pays
 * for: ES modules through node's module hooks, and at exit everything
 * require() loaded (the launcher is CommonJS, and so are some packages).
 */
const RECORDING_HOOKS = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.TIDELINE_MODULE_LOG, resolved.url + '\\n');
  return resolved;
}`;

describe('tideline policy show (built CLI, libvirt test driver)', function () {
  this.timeout(60_000);
  let dir: string;
  let uri: string;
  let register: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tideline-policy-show-'));
    await writeFile(path.join(dir, 'node.xml'), NODE_XML);
    uri = `test://${path.join(dir, 'node.xml')}`;
    await writeFile(path.join(dir, 'hooks.mjs'), RECORDING_HOOKS);
    register = path.join(dir, 'register.mjs');
    await writeFile(
      register,
      [
        `import { appendFileSync } from 'node:fs';`,
        `import { createRequire, register } from 'node:module';`,
        `register(${JSON.stringify(`file://${path.join(dir, 'hooks.mjs')}`)});`,
        `const required = createRequire(import.meta.url).cache;`,
        `process.on('exit', () => appendFileSync(process.env.TIDELINE_MODULE_LOG, Object.keys(required).join('\\n') + '\\n'));`,
      ].join('\n'),
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tideline = (args: string[], env: Record<string, string> = {}, nodeOptions: string[] = []) =>
    execa(process.execPath, [...nodeOptions, builtCli(), ...args], { reject: false, timeout: 30_000, env });

  it('shows the VM and per-disk policy, as text and as JSON', async () => {
    const text = await tideline(['policy', 'show', 'web', '--uri', uri]);
    assert.equal(text.exitCode, 0, text.stderr);
    assert.equal(text.stdout, 'web: chunk=256.0 MiB free-target=128.0 MiB\n  vdb: enabled=no max-size=10.00 GiB');
    const json = await tideline(['policy', 'show', '--json', 'web', '--uri', uri]);
    assert.deepEqual(JSON.parse(json.stdout), { vm: { chunk: 268435456, freeTarget: 134217728 }, disks: { vdb: { enabled: false, maxSize: 10737418240 } } });
    const none = await tideline(['policy', 'show', 'plain', '--uri', uri]);
    assert.deepEqual([none.exitCode, none.stdout], [0, 'plain: (host defaults)']);
  });

  it('loads none of yargs, execa, zod or the XML parser for the usual form, and the parser only when the XML needs it', async () => {
    const loaded = async (vm: string) => {
      const args = ['policy', 'show', vm, '--uri', uri];
      const log = path.join(dir, `modules-${vm}.log`);
      const result = await tideline(args, { TIDELINE_MODULE_LOG: log }, ['--import', register]);
      assert.equal(result.exitCode, 0, result.stderr);
      return { stdout: result.stdout, modules: await readFile(log, 'utf8') };
    };
    const heavy = /node_modules\/(yargs|execa|zod|fast-xml-parser)\//;
    const usual = await loaded('web');
    assert.doesNotMatch(usual.modules, heavy);
    assert.match(usual.modules, /dist\/cli\/tideline\.cjs/, 'the recording saw nothing (or not the command itself): this check proves nothing');
    const byHand = await loaded('by-hand');
    assert.equal(byHand.stdout, 'by-hand: chunk=1.00 GiB\n  vda: enabled=yes');
    assert.match(byHand.modules, /node_modules\/fast-xml-parser\//);
    assert.doesNotMatch(byHand.modules, /node_modules\/(yargs|execa)\//);
  });

  it('names what is wrong: a broken policy, an unknown domain, a command line it cannot read', async () => {
    const broken = await tideline(['policy', 'show', 'broken', '--uri', uri]);
    assert.equal(broken.exitCode, 1);
    assert.equal(broken.stderr, 'tideline: tideline policy for the VM: chunk: cannot read "lots" as a size; write bytes or a number with K, M, G or T (binary units), e.g. 256M [domain-xml]');
    const unknown = await tideline(['policy', 'show', 'no-such-vm', '--uri', uri]);
    assert.equal(unknown.exitCode, 1);
    assert.match(unknown.stderr, /^tideline: virsh metadata failed: .*failed to get domain 'no-such-vm' \[libvirt\]$/);
    const missing = await tideline(['policy', 'show']);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /Not enough non-option arguments/);
    const extra = await tideline(['policy', 'show', 'web', 'db', '--uri', uri]);
    assert.equal(extra.exitCode, 2);
    assert.match(extra.stderr, /Unknown argument: db/);
    const unknownOption = await tideline(['policy', 'show', 'web', '--colour']);
    assert.equal(unknownOption.exitCode, 2);
    assert.match(unknownOption.stderr, /Unknown argument|colour/);
  });
});
