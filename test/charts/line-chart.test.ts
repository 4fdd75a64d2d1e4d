import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { cumulative, renderLineChart } from '../../src/charts/line-chart.js';

describe('SVG line chart', () => {
  it('draws one path per series with its legend, escapes text, and is well-formed XML', () => {
    const svg = renderLineChart({
      title: 'pauses per write rate <figure 3>',
      xLabel: 'write rate (MiB/s)',
      yLabel: 'pauses',
      xScale: 'log',
      series: [
        { name: 'vdsm-4.5', points: [[8, 0], [16, 1], [32, 3]] },
        { name: 'tideline & adaptive', points: [[8, 0], [16, 0], [32, 0], [1024, 1]] },
      ],
    });
    assert.equal(XMLValidator.validate(svg), true);
    const parsed = new XMLParser({ ignoreAttributes: false }).parse(svg) as { svg: { path: unknown[]; title: string } };
    assert.equal(parsed.svg.path.length, 2);
    assert.match(svg, /pauses per write rate &lt;figure 3&gt;/);
    assert.match(svg, /tideline &amp; adaptive/);
  });

  it('cumulative: each sample with the fraction at or below it', () => {
    assert.deepEqual(cumulative([30, 10, 20, Number.NaN]), [[10, 1 / 3], [20, 2 / 3], [30, 1]]);
  });

  it('property: any finite series, empty ones and a single point included, gives well-formed SVG without NaN', () => {
    const point = fc.tuple(fc.double({ min: 0.001, max: 1e6, noNaN: true }), fc.double({ min: 0, max: 1e6, noNaN: true }));
    fc.assert(
      fc.property(fc.array(fc.array(point, { maxLength: 20 }), { maxLength: 5 }), fc.boolean(), fc.boolean(), (series, log, steps) => {
        const svg = renderLineChart({ title: 't', xLabel: 'x', yLabel: 'y', xScale: log ? 'log' : 'linear', steps, series: series.map((points, index) => ({ name: `s${index}`, points })) });
        assert.equal(XMLValidator.validate(svg), true);
        assert.doesNotMatch(svg, /NaN|Infinity/);
      }),
      { numRuns: 1000 },
    );
  });
});
