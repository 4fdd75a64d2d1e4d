import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodePrepareReply, parseHookEvent, parsePrepareRequest } from '../../src/agent/spool-protocol.js';

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

  it('reads the prepare request the shell hook writes: the XML whole, newlines and all, and the storage domain it names', () => {
    const xml = "<domain>\n  <name>web</name>\n  <devices><disk><source dev='/dev/vg0/web-vda'/></disk></devices>\n</domain>";
    assert.deepEqual(parsePrepareRequest(`web server\nprepare\nbegin\n/run/tideline/hook-events/.42.reply\nvg0\n\n${xml}\n`), { domain: 'web server', replyPath: '/run/tideline/hook-events/.42.reply', vg: 'vg0', xml });
    assert.deepEqual(parsePrepareRequest('web\nprepare\nbegin\n/spool/.7.reply\n\n/srv/domain\n<domain/>\n'), { domain: 'web', replyPath: '/spool/.7.reply', loopDomain: '/srv/domain', xml: '<domain/>' });
  });

  it('refuses a prepare request of another operation, without a domain, with a relative reply path, or cut short', () => {
    for (const text of ['', 'web\nstarted\nbegin\n/s/.1.reply\nvg0\n\n<domain/>\n', '\nprepare\nbegin\n/s/.1.reply\nvg0\n\n<domain/>\n', 'web\nprepare\nbegin\n.1.reply\nvg0\n\n<domain/>\n', 'web\nprepare\nbegin\n/s/.1.reply\nvg0\n']) {
      assert.equal(parsePrepareRequest(text), undefined, JSON.stringify(text));
    }
  });

  it('answers in one line the shell reads: exit code and message, or "-" and why the hook must do it itself', () => {
    assert.equal(encodePrepareReply({ outcome: { exitCode: 0 } }), '0\n');
    assert.equal(encodePrepareReply({ outcome: { exitCode: 1, message: 'tideline: domain web cannot start:\nits disk is gone' } }), '1 tideline: domain web cannot start: its disk is gone\n');
    assert.equal(encodePrepareReply({ declined: 'another storage domain' }), '- another storage domain\n');
    const long = encodePrepareReply({ outcome: { exitCode: 1, message: 'é'.repeat(5_000) } });
    assert.ok(Buffer.byteLength(long) <= 4_096, 'one write into a FIFO is never split up to 4096 bytes');
    assert.match(long, /^1 é+\.\.\.\n$/);
  });
});
