// Offline map: grid cells drawn as SVG from the grid's GeoJSON (no tiles, no map library), cameras, and open cases
// coloured by their SLA (green / yellow / red); cells shaded by their number of open cases; click-through to cases.
import { api } from '../api.js';
import { lang, t } from '../i18n.js';
import { cameraLabel, clear, el, stateLabel, startPage, toast } from '../ui.js';
import { svgEl } from '../svg.js';

const OPEN = 'reported,filed,dispatched,in_progress,handled,verifying,suspended';
const W = 1000;

function rings(geom) {
  if (!geom) return [];
  if (geom.type === 'Polygon') return [geom.coordinates];
  if (geom.type === 'MultiPolygon') return geom.coordinates;
  return [];
}

/** Equirectangular projection fitted to the bounds, with longitudes shrunk by cos(latitude). */
function projection(points) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of points) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  if (!Number.isFinite(x0)) return null;
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const pad = 0.04 * Math.max((x1 - x0) * k, y1 - y0, 1e-4);
  const spanX = (x1 - x0) * k + 2 * pad;
  const spanY = (y1 - y0) + 2 * pad;
  const s = W / spanX;
  return { h: Math.max(200, spanY * s), p: ([x, y]) => [((x - x0) * k + pad) * s, ((y1 - y) + pad) * s] };
}

function centroid(geom) {
  const ring = rings(geom)[0]?.[0] || [];
  if (!ring.length) return null;
  const n = ring.length - 1 || 1;
  return [ring.slice(0, n).reduce((a, p) => a + p[0], 0) / n, ring.slice(0, n).reduce((a, p) => a + p[1], 0) / n];
}

/** Ray casting: is the point inside the (outer ring of the) polygon? */
function inside([x, y], geom) {
  for (const poly of rings(geom)) {
    const ring = poly[0] || [];
    let hit = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    if (hit) return true;
  }
  return false;
}

function extent(geom) {
  const pts = rings(geom).flat(2);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  return [Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
}

function info(children) {
  const box = clear(document.getElementById('map-info'));
  box.classList.remove('muted');
  box.append(...children);
}

async function main() {
  await startPage();
  const [cells, cameras, cases] = await Promise.all([
    api('/api/v1/grid/geojson?level=cell'), api('/api/v1/cameras'),
    api(`/api/v1/cases?state=${OPEN}&limit=500`),
  ]);
  const byCell = new Map(cells.features.map((f) => [f.properties.code, f]));
  const openIn = new Map();
  const placed = [];
  const perCell = new Map();
  for (const c of cases.items) {
    openIn.set(c.grid_cell, (openIn.get(c.grid_cell) || 0) + 1);
    let at = typeof c.lon === 'number' && typeof c.lat === 'number' ? [c.lon, c.lat] : null;
    const f = byCell.get(c.grid_cell);
    // a case drawn outside its own cell (a camera looking across a boundary, or no position) goes to the cell,
    // spread on a small spiral so that cases in one cell do not hide each other
    if (f && (!at || !inside(at, f.geometry))) {
      const ctr = centroid(f.geometry);
      const [w, h] = extent(f.geometry);
      const k = perCell.get(c.grid_cell) || 0;
      perCell.set(c.grid_cell, k + 1);
      const r = k ? 0.13 * Math.sqrt(k) * Math.min(w, h) : 0;
      at = ctr && [ctr[0] + r * Math.cos(k * 2.4), ctr[1] + r * Math.sin(k * 2.4)];
    }
    if (at) placed.push([c, at]);
  }
  const camPts = cameras.items.filter((c) => typeof c.lat === 'number' && typeof c.lon === 'number');
  const pts = [...cells.features.flatMap((f) => rings(f.geometry).flat(2)), ...camPts.map((c) => [c.lon, c.lat]),
    ...placed.map(([, p]) => p)];
  const svg = document.getElementById('map');
  const pr = projection(pts);
  document.getElementById('map-status').textContent = t('map.status', {
    cells: cells.features.length, cameras: camPts.length, cases: placed.length, open: cases.total,
  });
  if (!pr) { toast(t('map.empty')); return; }
  svg.setAttribute('viewBox', `0 0 ${W} ${Math.round(pr.h)}`);
  const gCells = svgEl('g', { class: 'cells' });
  for (const f of cells.features) {
    const n = openIn.get(f.properties.code) || 0;
    const d = rings(f.geometry).map((poly) => poly.map((ring) => `M${ring.map((p) => pr.p(p).map((v) => v.toFixed(1)).join(',')).join('L')}Z`).join('')).join('');
    const path = svgEl('path', { d, class: `cell d${Math.min(4, n)}`, 'data-code': f.properties.code });
    const title = svgEl('title');
    const name = lang() === 'zh-CN' ? (f.properties.name_zh || f.properties.name) : f.properties.name;
    title.textContent = `${name} (${f.properties.code}) · ${t('map.open_n', { n })}`;
    path.append(title);
    path.addEventListener('click', () => info([
      el('h3', { text: `${name} (${f.properties.code})` }),
      el('p', { text: [f.properties.community, f.properties.street, f.properties.district].filter(Boolean).join(' · ') }),
      el('p', { text: t('map.open_n', { n }) }),
      el('a', { href: `/queue?grid_cell=${encodeURIComponent(f.properties.code)}`, text: t('map.to_queue') }),
    ]));
    gCells.append(path);
  }
  const gCams = svgEl('g', { class: 'cameras' });
  for (const c of camPts) {
    const [x, y] = pr.p([c.lon, c.lat]);
    const r = svgEl('rect', { x: x - 5, y: y - 5, width: 10, height: 10, class: 'camera', 'data-camera': c.camera_id });
    const title = svgEl('title');
    title.textContent = cameraLabel(c.camera_id, c.name);
    r.append(title);
    gCams.append(r);
  }
  const gCases = svgEl('g', { class: 'cases' });
  for (const [c, p] of placed) {
    const [x, y] = pr.p(p);
    const colour = c.sla?.colour || 'none';
    const dot = svgEl('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 6, class: `case ${colour}`, 'data-case': c.id });
    const title = svgEl('title');
    title.textContent = `${c.public_id} · ${stateLabel(c.state)}`;
    dot.append(title);
    dot.addEventListener('click', () => { window.location.assign(`/cases/${c.id}`); });
    gCases.append(dot);
  }
  svg.append(gCells, gCams, gCases);
}

main().catch((e) => toast(e.message, 'error'));
