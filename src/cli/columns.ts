/**
 * Rows under a heading in aligned columns, two spaces apart, as `virsh list`
 * and `lvs` print them. `tideline status` is run often by monitoring and by
 * hand: this costs nothing to load, where a table library cost about a third
 * of a bare node start here. Widths count code points, so wide characters in a
 * VM name misalign (libvirt names are almost always ASCII).
 */
export function formatColumns(head: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widthOf = (text: string) => [...text].length;
  const widths = head.map((heading, column) => Math.max(widthOf(heading), ...rows.map((row) => widthOf(row[column] ?? ''))));
  const line = (cells: readonly string[]) =>
    head
      .map((_, column) => {
        const cell = cells[column] ?? '';
        return column === head.length - 1 ? cell : cell + ' '.repeat(widths[column]! - widthOf(cell));
      })
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}
