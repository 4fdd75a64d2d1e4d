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

  it('passes a candidate with its doorbell alone (the hosts learn it from their reply slots), with or without a list of candidates', () => {
    assert.deepEqual(check('mailbox = /m\ndoorbell = 10.0.0.1:7797\n'), {
      check: 'doorbell',
      status: 'ok',
      detail: "this host's SPM listens on 10.0.0.1:7797 while it serves and names it in the reply slots it writes; rings the doorbell the SPM names in this host's reply slot",
    });
    assert.deepEqual(check('mailbox = /m\ndoorbell = 10.0.0.3:7797\nspm-doorbells = 10.0.0.1:7797, [2001:db8::2]:7797\n').detail, "this host's SPM listens on 10.0.0.3:7797 while it serves and names it in the reply slots it writes; rings 10.0.0.1:7797, [2001:db8::2]:7797 and the doorbell the SPM names in this host's reply slot");
    assert.equal(check('mailbox = /m\nspm-doorbells = 10.0.0.1:7797\n').status, 'ok');
  });

  it('warns about a doorbell on a wildcard address, which the SPM cannot name to the hosts', () => {
    for (const wildcard of ['0.0.0.0:7797', '[::]:7797']) {
      const finding = check(`mailbox = /m\ndoorbell = ${wildcard}\n`);
      assert.equal(finding.status, 'warn');
      assert.match(finding.detail, /wildcard address .*set doorbell to an address of this host the others reach/);
    }
  });

  it('warns about doorbells on a host without a mailbox', () => {
    assert.equal(check('spm-doorbells = 10.0.0.1:7797\n').status, 'warn');
  });
});
