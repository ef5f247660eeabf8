// Cameras & edges board: health from /api/v1/edges and /api/v1/cameras, live crowd figures over the stream
// with a sparkline of the figures seen since the page opened (plus the latest one on load).
import { api, evidenceUrl, stream } from '../api.js';
import { t, tOr } from '../i18n.js';
import { cameraLabel, clear, el, fmtNum, fmtRelative, fmtTime, setLive, startPage, toast, zoneLabel } from '../ui.js';
import { sparkline } from '../svg.js';

const HISTORY = 60; // points kept per crowd zone
const HISTORY_KEY = 'gridwatch.crowd';
// "camera|zone" → [{at, count, density, level}]; kept for the tab so a page switch does not lose the sparkline.
const history = new Map(Object.entries(JSON.parse(sessionStorage.getItem(HISTORY_KEY) || '{}')));
let cameras = [];

function pushFigure(cameraId, fig) {
  const key = `${cameraId}|${fig.zone}`;
  const list = history.get(key) || [];
  if (list.length && list.at(-1).at >= fig.at) return; // the same or an older figure
  list.push(fig);
  while (list.length > HISTORY) list.shift();
  history.set(key, list);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(Object.fromEntries(history)));
}

function isoFromEpoch(v) {
  if (v === null || v === undefined) return null;
  return typeof v === 'number' ? new Date(v * 1000).toISOString() : v;
}

function stat(label, value, cls = '') {
  return el('div', { class: `stat ${cls}` }, [el('span', { class: 'stat-label', text: label }), el('span', { class: 'stat-value', text: value })]);
}

function renderEdges(items) {
  const box = clear(document.getElementById('edge-list'));
  items.forEach((e) => {
    const hb = e.heartbeat || {};
    box.append(el('div', { class: `edge-card ${e.online ? 'online' : 'offline'}`, dataset: { edgeId: e.edge_id } }, [
      el('span', { class: `dot ${e.online ? 'ok' : 'bad'}` }),
      el('strong', { text: e.edge_id }),
      el('span', { class: 'muted', text: e.online ? t('cams.online') : t('cams.offline') }),
      el('span', { class: 'muted', text: `${t('cams.last_seen')}: ${fmtRelative(e.last_seen_at)}` }),
      e.version ? el('span', { class: 'muted', text: `v${e.version}` }) : null,
      hb.outbox ? el('span', { class: 'muted', text: `${t('cams.outbox')}: ${hb.outbox.pending ?? '–'}` }) : null,
    ]));
  });
  if (!items.length) box.append(el('p', { class: 'muted', text: t('cams.no_edges') }));
}

function crowdBlock(cam) {
  const zones = cam.crowd || [];
  if (!zones.length) return null;
  return el('div', { class: 'crowd' }, zones.map((z) => {
    const list = history.get(`${cam.camera_id}|${z.zone}`) || [z];
    const last = list.at(-1);
    return el('div', { class: 'crowd-zone', dataset: { zone: z.zone } }, [
      el('div', { class: 'crowd-head' }, [
        el('span', { text: zoneLabel(cam.camera_id, z.zone) }),
        el('span', { class: `level level-${last.level || 'none'}`, text: tOr(`level.${last.level}`, last.level || '–') }),
      ]),
      el('div', { class: 'crowd-figs' }, [
        el('span', { class: 'crowd-count', text: `${last.count ?? '–'} ${t('cams.people')}` }),
        // the estimate's 80 % interval, when the edge publishes one
        last.count_low !== undefined && last.count_high !== undefined
          ? el('span', { class: 'muted crowd-interval', text: `(${last.count_low}–${last.count_high})` }) : null,
        el('span', { class: 'muted', text: `${fmtNum(last.density, 3)} /m²` }),
        // zones with a ground calibration: the densest ground cell beside the zone average
        last.peak_density !== undefined ? el('span', {
          class: 'crowd-peak', title: peakTitle(last.peak_cell), text: `${t('cams.peak')} ${fmtNum(last.peak_density, 3)} /m²`,
        }) : null,
      ].filter(Boolean)),
      last.forecast ? el('div', {
        class: `crowd-forecast${last.forecast.early_warning ? ' warn' : ''}`,
        text: `${t('cams.forecast')}: ${fmtNum(last.forecast.predicted_density, 3)} /m² · `
          + `${Math.round((last.forecast.horizon_s || 0) / 60 * 10) / 10} min · `
          + `${tOr(`level.${last.forecast.predicted_level}`, last.forecast.predicted_level || '–')}`
          + (last.forecast.early_warning ? ` · ${t('cams.early_warning')}` : ''),
      }) : null,
      sparkline(list.map((f) => f.count), { width: 200, height: 36 }),
    ].filter(Boolean));
  }));
}

/** Where the peak cell is: its persons, ground area and centre in the calibration's metres. */
function peakTitle(cell) {
  if (!cell) return '';
  const at = Array.isArray(cell.center_m) ? ` @ ${fmtNum(cell.center_m[0], 1)}, ${fmtNum(cell.center_m[1], 1)} m` : '';
  return `${fmtNum(cell.estimate, 1)} ${t('cams.people')} / ${fmtNum(cell.area_m2, 1)} m²${at}`;
}

/** "0.2 / 1" analysed against asked, with a warning when the detector does well under half of what was asked. */
function detectStat(h) {
  const asked = h.detect_fps;
  const done = h.analysed_fps;
  if (asked === undefined && done === undefined) return stat(t('cams.detect_fps'), '–');
  const text = `${fmtNum(done, done !== undefined && done < 1 ? 2 : 1)} / ${fmtNum(asked, asked < 1 ? 2 : 1)}`;
  const low = asked > 0 && done !== undefined && done < asked * 0.5;
  const node = stat(t('cams.detect_fps'), text, low ? 'warn' : '');
  node.title = t('cams.detect_fps_tip');
  node.dataset.stat = 'detect';
  return node;
}

function cameraCard(cam) {
  const h = cam.health || {};
  // the camera's own state counts only while its edge reports; an offline edge makes its cameras unknown
  const status = cam.status || (cam.edge_online ? (h.state || 'unknown') : 'unknown');
  const online = cam.edge_online && status === 'online';
  // thumbnail: the edge's latest clean live frame (signed URL, with its capture time), else the newest case snapshot
  const img = el('div', { class: 'cam-snap' });
  const alt = cameraLabel(cam.camera_id, cam.name);
  if (cam.live_frame && cam.live_frame.url) {
    img.dataset.source = 'live';
    img.append(el('img', { src: cam.live_frame.url, alt }),
      el('span', { class: 'cam-snap-time', title: fmtTime(cam.live_frame.at), text: `${t('cams.live_frame')} · ${fmtRelative(cam.live_frame.at)}` }));
  } else if (cam.latest_snapshot_sha256) {
    img.dataset.source = 'snapshot';
    evidenceUrl(cam.latest_snapshot_sha256).then((url) => url && img.append(el('img', { src: url, alt }),
      el('span', { class: 'cam-snap-time', text: t('cams.case_snapshot') })));
  } else {
    img.dataset.source = 'none';
    img.append(el('span', { class: 'muted', text: t('cams.no_picture') }));
  }
  const lastAnalysed = isoFromEpoch(h.last_analysed_at ?? h.last_frame_at);
  const unknown = !cam.edge_online || status === 'unknown'; // edge offline, or no health reported for it
  const cls = unknown ? 'unknown' : (online ? 'online' : 'offline');
  return el('article', { class: `camera-card ${cls}`, dataset: { cameraId: cam.camera_id, status } }, [
    img,
    el('div', { class: 'cam-body' }, [
      el('div', { class: 'cam-title' }, [
        el('span', { class: `dot ${online ? 'ok' : (unknown ? 'unknown' : 'bad')}` }),
        el('strong', { text: cameraLabel(cam.camera_id, cam.name) }),
        el('span', { class: 'badge cam-status', text: cam.edge_online ? tOr(`camstate.${status}`, status) : t('cams.unknown_edge_offline') }),
      ]),
      el('div', { class: 'muted small', text: [cam.camera_id, cam.edge_id, cam.grid_cell, cam.address].filter(Boolean).join(' · ') }),
      el('div', { class: 'stats' }, [
        detectStat(h),
        stat(t('cams.decode_fps'), fmtNum(h.decode_fps ?? h.input_fps, 1)),
        stat(t('cams.last_analysed'), lastAnalysed ? fmtRelative(lastAnalysed) : '–'),
        stat(t('cams.reconnects'), String(h.reconnects ?? '–'), h.reconnects > 0 ? 'warn' : ''),
        stat(t('cams.open_incidents'), String(cam.open_incidents ?? 0), cam.open_incidents > 0 ? 'warn' : ''),
      ]),
      h.last_error ? el('div', { class: 'error small', text: h.last_error }) : null,
      crowdBlock(cam),
      el('a', { class: 'small', href: `/queue?camera_id=${encodeURIComponent(cam.camera_id)}`, text: t('cams.cases') }),
    ]),
  ]);
}

function renderCameras() {
  const grid = clear(document.getElementById('camera-grid'));
  cameras.forEach((cam) => grid.append(cameraCard(cam)));
  document.getElementById('cams-empty').hidden = cameras.length > 0;
}

async function load() {
  try {
    const [edges, cams] = await Promise.all([api('/api/v1/edges'), api('/api/v1/cameras')]);
    cameras = cams.items;
    cameras.forEach((c) => (c.crowd || []).forEach((z) => pushFigure(c.camera_id, z)));
    renderEdges(edges.items);
    renderCameras();
    document.getElementById('cam-updated').textContent = `${t('cams.updated')} ${fmtTime(new Date().toISOString())}`;
  } catch (err) { toast(`${t('common.error')}: ${err.message}`, 'error'); }
}

async function main() {
  await startPage();
  await load();
  let pendingReload = null;
  stream((kind, data) => {
    if (kind === 'crowd.figure' && data && data.camera_id) {
      // the figure with its detail as central stored it (interval, forecast, peak cell), not only the count
      const { edge_id: _edge, camera_id: _camera, ...fig } = data;
      pushFigure(data.camera_id, fig);
      const cam = cameras.find((c) => c.camera_id === data.camera_id);
      if (cam) {
        const zones = cam.crowd || (cam.crowd = []);
        const i = zones.findIndex((z) => z.zone === data.zone);
        if (i >= 0) zones[i] = fig; else zones.push(fig);
        renderCameras();
      }
    } else if (['edge.status', 'camera.health', 'case.created', 'incident.event'].includes(kind)) {
      clearTimeout(pendingReload);
      pendingReload = setTimeout(load, 1000);
    }
  }, setLive);
  setInterval(load, 30000);
}

main();
