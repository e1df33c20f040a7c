// The authority status page's plots (SPEC.md §6.10), drawn with uPlot (served by the authority
// itself, no CDN) from GET /bitcloud/status/history. Without JavaScript the page's tables remain.
/* global document, uPlot */
(function () {
  'use strict';
  // SPEC.md §6.10: a sample lists the proven cells of this many relays at most (SAMPLE_RELAYS of
  // directory/status-history.ts).
  var SAMPLE_RELAYS = 32;
  var palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  function el(id) { return document.getElementById(id); }
  function width() { return Math.min(900, (document.body.clientWidth || 900) - 40); }
  function plot(id, title, xLabel, series, data, opts) {
    var box = el(id);
    if (!box) return;
    box.textContent = '';
    var o = {
      title: title, width: width(), height: 220,
      scales: { x: { time: !(opts && opts.notTime) } },
      axes: [{ label: xLabel }, { label: (opts && opts.yLabel) || '' }],
      series: [{ label: xLabel }].concat(series.map(function (s, i) {
        return Object.assign({ stroke: palette[i % palette.length], width: 2, points: { show: data[0].length < 60 } }, s);
      })),
    };
    new uPlot(o, data, box);
    box.setAttribute('data-drawn', 'true');
  }
  function relayIds(samples, field) {
    var seen = {};
    samples.forEach(function (s) { Object.keys(s[field] || {}).forEach(function (fp) { seen[fp] = true; }); });
    return Object.keys(seen).sort();
  }
  function draw(h) {
    var s = h.samples || [], names = h.names || {};
    var name = function (fp) { return (names[fp] || '') + ' ' + fp.slice(0, 8); };
    if (s.length) {
      var t = s.map(function (x) { return x.t / 1000; });
      plot('plot-relays', 'Relays and storage nodes in each consensus', 'time',
        [{ label: 'relays' }, { label: 'storage nodes' }],
        [t, s.map(function (x) { return x.relays; }), s.map(function (x) { return x.storage; })]);
      var ids = relayIds(s, 'weights');
      plot('plot-weights', 'Consensus weight by relay (KB/s)', 'time', ids.map(function (fp) { return { label: name(fp) }; }),
        [t].concat(ids.map(function (fp) { return s.map(function (x) { return x.weights[fp] == null ? null : x.weights[fp]; }); })));
      // One point per proven epoch (several consensuses carry the same one).
      var byEpoch = [];
      s.forEach(function (x) {
        if (x.provenEpoch == null) return;
        if (byEpoch.length && byEpoch[byEpoch.length - 1].provenEpoch === x.provenEpoch) return;
        byEpoch.push(x);
      });
      if (byEpoch.length) {
        var te = byEpoch.map(function (x) { return x.t / 1000; });
        // SPEC.md §6.10: a sample lists the proven cells of its largest relays only; provenTotal is all of them.
        var totals = byEpoch.map(function (x) { return x.provenTotal; });
        plot('plot-proven', 'Total proven bandwidth per epoch (cells)', 'time', [{ label: 'proven cells' }], [te, totals]);
        var pids = relayIds(byEpoch, 'proven');
        plot('plot-share', 'Each relay\u2019s share of the proven bandwidth', 'time', pids.map(function (fp) { return { label: name(fp) }; }),
          [te].concat(pids.map(function (fp) {
            return byEpoch.map(function (x, i) {
              if (!totals[i]) return null;
              if (x.proven[fp] != null) return x.proven[fp] / totals[i];
              // A full list leaves out relays that may hold cells (a gap); a shorter one lists all with some.
              return Object.keys(x.proven).length < SAMPLE_RELAYS ? 0 : null;
            });
          })));
      }
    }
    var b = h.blocks || [];
    if (b.length) {
      plot('plot-minted', 'Reward chain: units minted per block', 'block height',
        [{ label: 'minted' }], [b.map(function (x) { return x.height; }), b.map(function (x) { return x.minted; })], { notTime: true });
    }
  }
  function load() {
    fetch('/bitcloud/status/history', { cache: 'no-store' }).then(function (r) { return r.json(); }).then(draw)
      .catch(function (e) { var n = el('plots-error'); if (n) n.textContent = 'plots unavailable: ' + e; });
  }
  if (typeof uPlot === 'undefined') return;
  document.documentElement.classList.add('js');
  load();
  setInterval(load, 30000);
})();
