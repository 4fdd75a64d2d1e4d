import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatColumns } from '../../src/cli/columns.js';

describe('aligned columns (tideline status)', () => {
  it('pads every column but the last to its widest cell, two spaces apart, with a rule under the heading', () => {
    const text = formatColumns(['vm', 'drive', 'state'], [['web01', 'vda', 'ok'], ['db', 'vdb', 'error: domain-full']]);
    assert.equal(text, ['vm     drive  state', '-----  -----  ------------------', 'web01  vda    ok', 'db     vdb    error: domain-full'].join('\n'));
  });

  it('leaves no trailing blanks and fills a short row with empty cells', () => {
    assert.equal(formatColumns(['a', 'bb', 'c'], [['x'], ['', '', '']]), ['a  bb  c', '-  --  -', 'x', ''].join('\n'));
  });

  it('property: every line of cells without blanks splits back into the cells, and columns start at one offset', () => {
    const cell = fc.stringMatching(/^[a-z0-9.-]{1,12}$/);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }).chain((columns) => fc.tuple(fc.array(cell, { minLength: columns, maxLength: columns }), fc.array(fc.array(cell, { minLength: columns, maxLength: columns }), { maxLength: 8 }))), ([head, rows]) => {
        const lines = formatColumns(head, rows).split('\n');
        assert.deepEqual(lines[0]!.split(/ +/), head);
        rows.forEach((row, index) => assert.deepEqual(lines[index + 2]!.split(/ +/), row));
        const starts = (line: string) => [...line.matchAll(/(?:^|  )(\S)/g)].map((match) => match.index! + (match[0].length - 1));
        for (const line of lines.slice(2)) assert.deepEqual(starts(line), starts(lines[0]!));
      }),
    );
  });
});
