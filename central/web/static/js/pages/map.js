// Offline map: grid cells drawn as SVG from the grid's GeoJSON (no map library), cameras, and open cases coloured by
// their SLA (green / yellow / red); cells shaded by their number of open cases; click-through to cases. Web Mercator,
// so that when the site has an internal tile server (map.tile_url in central.yaml) its XYZ tiles line up under the
// cells; without one nothing is requested beyond central.
import { api } from '../api.js';
import { lang, t } from '../i18n.js';
import { cameraLabel, clear, el, stateLabel, startPage, toast } from '../ui.js';
import { svgEl } from '../svg.js';

const OPEN = 'reported,filed,dispatched,in_progress,handled,verifying,suspended';
const W = 1000;
const MAX_TILES = 256;

function rings(geom) {
  if (!geom) return [];
  if (geom.type === 'Polygon') return [geom.coordinates];
  if (geom.type === 'MultiPolygon') return geom.coordinates;
  return [];
}

/** Web Mercator in world units (0..1 across the world, y down). */
function mercator([lon, lat]) {
  const phi = Math.max(-85.05, Math.min(85.05, lat)) * Math.PI / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2];
}

/** Web Mercator fitted to the bounds of the points, W px wide. */
function projection(points) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const p of points) {
    const [x, y] = mercator(p);
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (!Number.isFinite(x0)) return null;
  const pad = 0.04 * Math.max(x1 - x0, y1 - y0, 1e-9);
  const s = W / ((x1 - x0) + 2 * pad);
  const ox = x0 - pad;
  const oy = y0 - pad;
  return {
    h: Math.max(200, ((y1 - y0) + 2 * pad) * s), s, ox, oy,
    p: (pt) => { const [x, y] = mercator(pt); return [(x - ox) * s, (y - oy) * s]; },
  };
}

/** The tile server's XYZ tiles covering the drawing (at most MAX_TILES), inside the configured bounds. */
function tiles(cfg, pr) {
  const z = Math.max(cfg.min_zoom, Math.min(cfg.max_zoom, Math.round(Math.log2(pr.s / 256))));
  const n = 2 ** z;
  let [wx0, wy0, wx1, wy1] = [pr.ox, pr.oy, pr.ox + W / pr.s, pr.oy + pr.h / pr.s];
  if (cfg.bounds) {
    const [w, so, e, no] = cfg.bounds;
    const [bx0, by0] = mercator([w, no]);
    const [bx1, by1] = mercator([e, so]);
    [wx0, wy0, wx1, wy1] = [Math.max(wx0, bx0), Math.max(wy0, by0), Math.min(wx1, bx1), Math.min(wy1, by1)];
  }
  const out = [];
  if (wx1 <= wx0 || wy1 <= wy0) return out;
  for (let ty = Math.max(0, Math.floor(wy0 * n)); ty < Math.min(n, Math.ceil(wy1 * n)); ty += 1) {
    for (let tx = Math.max(0, Math.floor(wx0 * n)); tx < Math.min(n, Math.ceil(wx1 * n)); tx += 1) {
      if (out.length >= MAX_TILES) return out;
      const href = cfg.tile_url.replaceAll('{z}', z).replaceAll('{x}', tx).replaceAll('{y}', ty);
      const size = pr.s / n;
      out.push({ href, x: (tx / n - pr.ox) * pr.s, y: (ty / n - pr.oy) * pr.s, size });
    }
  }
  return out;
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
  const [cells, cameras, cases, mapCfg] = await Promise.all([
    api('/api/v1/grid/geojson?level=cell'), api('/api/v1/cameras'),
    api(`/api/v1/cases?state=${OPEN}&limit=500`), api('/api/v1/map/config'),
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
  const gTiles = svgEl('g', { class: 'tiles' });
  if (mapCfg.tile_url) {
    svg.classList.add('tiled');
    for (const tile of tiles(mapCfg, pr)) {
      gTiles.append(svgEl('image', {
        href: tile.href, x: tile.x.toFixed(2), y: tile.y.toFixed(2), width: tile.size.toFixed(2),
        height: tile.size.toFixed(2), preserveAspectRatio: 'none',
      }));
    }
    const attribution = document.getElementById('map-attribution');
    attribution.textContent = mapCfg.attribution || '';
    attribution.hidden = !mapCfg.attribution;
  }
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
  svg.append(gTiles, gCells, gCams, gCases);
}

main().catch((e) => toast(e.message, 'error'));
