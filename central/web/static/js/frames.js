// Live frames (central.live_frames): a camera's newest clean frame from its edge, fetched with the Bearer header
// and shown as a blob URL. Used by the zone editor (its drawing background) and the cameras page.
import { getToken } from './api.js';

/** {url, at, width, height} of the camera's live frame, or null when it has none (404) or the fetch fails. */
export async function liveFrame(cameraId) {
  if (!cameraId || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(cameraId)) return null;
  const token = getToken();
  try {
    const res = await fetch(`/api/v1/cameras/${encodeURIComponent(cameraId)}/frame`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: 'omit', cache: 'no-store',
    });
    if (!res.ok) return null;
    const blob = await res.blob();
    return { url: URL.createObjectURL(blob), at: res.headers.get('X-Frame-At') };
  } catch {
    return null;
  }
}
