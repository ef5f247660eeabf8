// Hand-drawn SVG charts (no library): sparkline, multi-series line chart, heat map.
// Only SVG presentation attributes and CSS classes are used, so the CSP needs no inline styles.

const NS = 'http://www.w3.org/2000/svg';

export function svgEl(tag, attrs = {}, children = []) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of [].concat(children)) if (c) node.append(c);
  return node;
}

function svgText(x, y, text, attrs = {}) {
  const node = svgEl('text', { x, y, ...attrs });
  node.textContent = text;
  return node;
}

/** A tiny trend line for live figures. `values` are numbers (nulls skipped). */
export function sparkline(values, { width = 160, height = 36, className = 'spark' } = {}) {
  // Stretches to its box (preserveAspectRatio none); lines keep their width via vector-effect in the CSS.
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, class: className, role: 'img', preserveAspectRatio: 'none' });
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
  if (pts.length < 2) return svg;
  const max = Math.max(...pts.map(([, v]) => v));
  const min = Math.min(0, ...pts.map(([, v]) => v));
  const span = max - min || 1;
  const n = values.length - 1 || 1;
  const xy = pts.map(([i, v]) => [2 + (i / n) * (width - 4), height - 2 - ((v - min) / span) * (height - 4)]);
  const d = xy.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
  svg.append(svgEl('path', { d: `${d}L${xy.at(-1)[0].toFixed(1)},${height - 2}L${xy[0][0].toFixed(1)},${height - 2}Z`, class: 'spark-area' }));
  svg.append(svgEl('path', { d, class: 'spark-line', fill: 'none' }));
  const [lx, ly] = xy.at(-1);
  svg.append(svgEl('circle', { cx: lx, cy: ly, r: 2.5, class: 'spark-dot' }));
  const title = svgEl('title');
  title.textContent = pts.map(([, v]) => v).join(' → ');
  svg.append(title);
  return svg;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  const m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/**
 * Line chart. `labels`: x labels; `series`: [{name, values, className}]. Draws axes, 4 grid lines, a legend.
 */
export function lineChart(labels, series, { width = 720, height = 240, yFormat = (v) => String(v) } = {}) {
  const pad = { l: 44, r: 28, t: 12, b: 40 };
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', role: 'img', preserveAspectRatio: 'xMidYMid meet' });
  const all = series.flatMap((s) => s.values).filter((v) => typeof v === 'number' && Number.isFinite(v));
  const top = Math.max(0, ...all);
  // Counts get whole-number grid lines (a multiple of 4); other values a 1-2-5 rounded maximum.
  const max = all.every(Number.isInteger) ? Math.max(4, Math.ceil(top / 4) * 4) : niceMax(top);
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const x = (i) => pad.l + (labels.length > 1 ? (i / (labels.length - 1)) * w : w / 2);
  const y = (v) => pad.t + h - (v / max) * h;
  for (let k = 0; k <= 4; k += 1) {
    const v = (max * k) / 4;
    svg.append(svgEl('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: 'grid-line' }));
    svg.append(svgText(pad.l - 6, y(v) + 4, yFormat(v), { class: 'axis-label', 'text-anchor': 'end' }));
  }
  const step = Math.max(1, Math.ceil(labels.length / 10));
  labels.forEach((lab, i) => {
    if (i % step === 0 || i === labels.length - 1) {
      svg.append(svgText(x(i), height - pad.b + 16, lab, { class: 'axis-label', 'text-anchor': 'middle' }));
    }
  });
  series.forEach((s, si) => {
    const pts = s.values.map((v, i) => [i, v]).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
    const d = pts.map(([i, v], j) => `${j ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
    const cls = s.className || `series-${si}`;
    if (d) svg.append(svgEl('path', { d, class: `series ${cls}`, fill: 'none' }));
    pts.forEach(([i, v]) => {
      const dot = svgEl('circle', { cx: x(i), cy: y(v), r: 3, class: `series-dot ${cls}` });
      dot.append(svgEl('title', {}, []));
      dot.firstChild.textContent = `${s.name} · ${labels[i]}: ${yFormat(v)}`;
      svg.append(dot);
    });
    const lx = pad.l + si * 150;
    svg.append(svgEl('rect', { x: lx, y: height - 14, width: 12, height: 4, class: `legend-swatch ${cls}` }));
    svg.append(svgText(lx + 16, height - 9, s.name, { class: 'legend-label' }));
  });
  return svg;
}

/**
 * Heat map: rows × columns of counts (e.g. zone × hour of day). Cell shade scales with count / max.
 * `matrix[r][c]` numbers; `rowLabels`, `colLabels` strings.
 */
export function heatMap(rowLabels, colLabels, matrix, { cell = 26, labelWidth = 190, title = (r, c, v) => `${r} ${c}: ${v}` } = {}) {
  const top = 22;
  const width = labelWidth + colLabels.length * cell + 4;
  const height = top + rowLabels.length * cell + 4;
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, class: 'heat-svg', role: 'img' });
  const max = Math.max(1, ...matrix.flat());
  colLabels.forEach((c, ci) => {
    if (colLabels.length <= 24 || ci % 2 === 0) {
      svg.append(svgText(labelWidth + ci * cell + cell / 2, top - 8, c, { class: 'axis-label', 'text-anchor': 'middle' }));
    }
  });
  rowLabels.forEach((r, ri) => {
    const short = r.length > 26 ? `${r.slice(0, 25)}…` : r;
    svg.append(svgText(labelWidth - 8, top + ri * cell + cell / 2 + 4, short, { class: 'axis-label', 'text-anchor': 'end' }));
    colLabels.forEach((c, ci) => {
      const v = matrix[ri]?.[ci] ?? 0;
      const level = v === 0 ? 0 : Math.min(5, 1 + Math.floor((v / max) * 4.999));
      const rect = svgEl('rect', {
        x: labelWidth + ci * cell + 1, y: top + ri * cell + 1, width: cell - 2, height: cell - 2, rx: 3,
        class: `heat-cell heat-${level}`, 'data-value': v,
      });
      const tip = svgEl('title');
      tip.textContent = title(r, c, v);
      rect.append(tip);
      svg.append(rect);
    });
  });
  return svg;
}
