import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseHookEvent } from '../../src/agent/hook-spool.js';

describe('hook spool events', () => {
  it('reads the three lines the shell hook writes, a domain name with spaces included', () => {
    assert.deepEqual(parseHookEvent('web server\nstarted\nbegin\n'), { domain: 'web server', operation: 'started', subOperation: 'begin' });
    assert.deepEqual(parseHookEvent('db\nrelease\nend\n'), { domain: 'db', operation: 'release', subOperation: 'end' });
  });

  it('refuses a half-written, empty or foreign file', () => {
    for (const text of ['', 'web\nstarted\n', 'web\nstarted\nbegin', 'web\nstarted\nbegin\nextra\n', '\nstarted\nbegin\n']) {
      assert.equal(parseHookEvent(text), undefined, JSON.stringify(text));
    }
  });

  it('property: any name without a newline comes back unchanged, and nothing throws', () => {
    const field = fc.string({ minLength: 1 }).filter((text) => !text.includes('\n'));
    fc.assert(fc.property(field, field, fc.string().filter((text) => !text.includes('\n')), (domain, operation, subOperation) => {
      assert.deepEqual(parseHookEvent(`${domain}\n${operation}\n${subOperation}\n`), { domain, operation, subOperation });
    }));
    fc.assert(fc.property(fc.string(), (text) => {
      parseHookEvent(text);
    }));
  });
});
