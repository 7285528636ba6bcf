# syntax=docker/dockerfile:1
# timeline-projector: build from the repository root (the context the COPY lines name):
#   docker build -f deploy/docker/timeline-projector.Dockerfile -t automation/timeline-projector:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with this service, the shared package and their dependencies only.
# Every dependency version comes from requirements.lock (used as constraints: the lock also pins
# dev tools and the other services' dependencies, which are not installed here).
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.8
ARG HATCHLING_VERSION=1.33.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN python -m pip install "uv==${UV_VERSION}" \
 && printf 'hatchling==%s\n' "${HATCHLING_VERSION}" > /tmp/build-constraints.txt
WORKDIR /src
COPY requirements.lock ./
COPY shared/pyproject.toml shared/
COPY shared/src/ shared/src/
COPY services/timeline-projector/pyproject.toml services/timeline-projector/
COPY services/timeline-projector/src/ services/timeline-projector/src/
RUN uv venv --python "$(command -v python3)" /opt/venv \
 && VIRTUAL_ENV=/opt/venv uv pip install --no-sources --constraint requirements.lock \
      --build-constraint /tmp/build-constraints.txt ./shared ./services/timeline-projector

# ---- runtime: the slim base, the virtualenv, a non-root user; no compiler, no uv, no sources.
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 automation \
 && useradd --system --uid 10001 --gid automation --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin automation
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUTOMATION_SERVICE_NAME=timeline-projector
USER 10001:10001
EXPOSE 8000
# liveness only: readiness (/health/ready) needs Kafka and Postgres and is the orchestrator's business
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# SIGTERM: the consumers finish and commit the batch in flight, then leave their groups
# (terminationGracePeriodSeconds in deploy/k8s covers it). Migrations: `python -m automation_shared.cli migrate timeline_projector`.
CMD ["uvicorn", "--factory", "timeline_projector.main:create_app", "--host", "0.0.0.0", "--port", "8000", \
     "--no-access-log", "--timeout-graceful-shutdown", "20"]
