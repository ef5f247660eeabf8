#!/usr/bin/env bash
# The main job: a local Mosquitto, the central service (API + dashboard) and an edge worker running the
# sample footage from ../shared/media through cameras.yaml. Installs everything first (scripts/setup.sh).
#   scripts/demo.sh                     run until Ctrl-C
#   DEMO_SECONDS=120 scripts/demo.sh    stop by itself after two minutes
#   DEMO_HTTP_PORT=8080 DEMO_MQTT_PORT=18830 change the ports
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

DEMO=var/demo
HTTP_PORT=${DEMO_HTTP_PORT:-8080}
MQTT_PORT=${DEMO_MQTT_PORT:-18830}
mkdir -p "$DEMO"
[ -d ../shared/media ] || { echo "demo: sample footage not found at ../shared/media" >&2; exit 1; }

pids=()
cleanup() {  # stop in order: edge first (its last events reach the broker), then central, then the broker
  trap - EXIT INT TERM
  echo; echo "demo: stopping"
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.2; done
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_port() {  # wait_port PORT NAME
  for _ in $(seq 1 100); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "demo: $2 did not start on port $1 (see $DEMO/*.log)" >&2; exit 1
}

wait_http() {  # wait_http URL NAME
  for _ in $(seq 1 100); do
    .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" \
      2>/dev/null && return 0
    sleep 0.2
  done
  echo "demo: $2 is not answering at $1 (see $DEMO/*.log)" >&2; exit 1
}

# 1. broker (our own, on its own port, persistent so nothing is lost across restarts)
cat > "$DEMO/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $PWD/$DEMO/
autosave_interval 5
CONF
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$MOSQUITTO" -c "$DEMO/mosquitto.conf" > "$DEMO/mosquitto.log" 2>&1 & pids+=($!)
wait_port "$MQTT_PORT" mosquitto

# 2. central: the repository's central.yaml (categories, routing of the sample site's grid cells to squads,
#    display names) with SQLite in var/demo, the demo broker, and the zone editor saving into cameras.yaml
.venv/bin/python tools/demo_config.py "$DEMO" "$MQTT_PORT"
.venv/bin/gridwatch-central --log-level WARNING migrate --config "$DEMO/central.yaml" > /dev/null
if [ ! -s "$DEMO/admin.token" ]; then
  .venv/bin/gridwatch-central create-token --config "$DEMO/central.yaml" --role admin demo-admin \
    2>/dev/null > "$DEMO/admin.token"
  .venv/bin/gridwatch-central create-token --config "$DEMO/central.yaml" --role viewer demo-viewer \
    2>/dev/null > "$DEMO/viewer.token"
fi
.venv/bin/gridwatch-central serve --config "$DEMO/central.yaml" --host 127.0.0.1 --port "$HTTP_PORT" \
  > "$DEMO/central.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$HTTP_PORT/healthz" central
# and for its MQTT subscription: on a first start the broker keeps nothing for central before that
for _ in $(seq 1 150); do
  .venv/bin/python -c "import json,sys,urllib.request; sys.exit(0 if (json.load(urllib.request.urlopen(sys.argv[1], \
timeout=1)).get('ingest') or {}).get('subscribed') else 1)" "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null && break
  sleep 0.2
done

# 3. edge: the sample clips, played in real time and looped, as if they were live cameras
GRIDWATCH_MQTT_PORT=$MQTT_PORT .venv/bin/gridwatch-edge run --config cameras.yaml --print --annotate-every 10 \
  2> "$DEMO/edge.log" & pids+=($!)

cat <<MSG

  GridWatch demo is running.
    dashboard:   http://127.0.0.1:$HTTP_PORT/      (sign in with the admin token below)
    admin token: $(cat "$DEMO/admin.token")
    viewer token: $(cat "$DEMO/viewer.token")
    API docs:    http://127.0.0.1:$HTTP_PORT/docs
    logs:        $DEMO/{edge,central,mosquitto}.log; annotated frames in var/edge/snapshots/annotated/
  Edge detections print below. Ctrl-C stops everything.

MSG
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  echo "demo: KPIs so far"
  .venv/bin/gridwatch-central kpis --config "$DEMO/central.yaml" --since 1d || true
else
  wait "${pids[2]}"
fi
