import assert from 'node:assert/strict';
import { parseHostConfig } from '../../src/config/host-config.js';
import { checkDoorbell } from '../../src/doctor/checks.js';

const check = (text: string) => checkDoorbell(parseHostConfig(`loop-domain = /d\n${text}`));

describe('doctor: doorbell settings', () => {
  it('passes without any, saying what they would bring', () => {
    const finding = check('mailbox = /m\nhost-id = 1\n');
    assert.equal(finding.status, 'ok');
    assert.match(finding.detail, /every 30 ms/);
  });

  it("passes a candidate whose doorbell every host's list names, and a host that only rings", () => {
    assert.deepEqual(check('mailbox = /m\ndoorbell = 10.0.0.1:7797\nspm-doorbells = 10.0.0.1:7797, [2001:db8::2]:7797\n'), {
      check: 'doorbell',
      status: 'ok',
      detail: "this host's SPM listens on 10.0.0.1:7797 while it serves; rings 10.0.0.1:7797, [2001:db8::2]:7797",
    });
    assert.equal(check('mailbox = /m\nspm-doorbells = 10.0.0.1:7797\n').status, 'ok');
  });

  it("warns when this host's doorbell is missing from the list the hosts ring", () => {
    const finding = check('mailbox = /m\ndoorbell = 10.0.0.3:7797\nspm-doorbells = 10.0.0.1:7797\n');
    assert.equal(finding.status, 'warn');
    assert.match(finding.detail, /listens on 10\.0\.0\.3:7797, but spm-doorbells does not list it/);
    assert.equal(check('mailbox = /m\ndoorbell = 10.0.0.3:7797\n').status, 'warn');
  });

  it('warns about doorbells on a host without a mailbox', () => {
    assert.equal(check('spm-doorbells = 10.0.0.1:7797\n').status, 'warn');
  });
});
