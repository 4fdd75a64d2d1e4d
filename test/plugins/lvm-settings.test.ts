import assert from 'node:assert/strict';
import { mergeSettings, renderSettings } from '../../plugins/lvm/index.js';

describe('lvm settings', () => {
  it('merges layers per section, later layers winning, and renders each section once', () => {
    const merged = mergeSettings({ global: { locking_type: 4 }, devices: { hints: '"none"' } }, { global: { activation: 0 } }, { global: { locking_type: 1 } });
    assert.equal(renderSettings(merged), 'global { locking_type = 1 activation = 0 } devices { hints = "none" }');
    assert.equal(renderSettings({ backup: {} }), '');
  });
});
