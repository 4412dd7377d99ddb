# syntax=docker/dockerfile:1.7
# relabel CPU image: the Prefect process worker of the local stack, and the Prefect and MLflow
# servers of infra/compose (one image, so client and server versions cannot drift apart).
#
#   docker build -f infra/docker/cpu.Dockerfile -t relabel-cpu:0.1.0 .
#
# Dependencies come from pyproject.toml only (`uv pip install -r pyproject.toml`): there is no
# second list to drift. No credentials are baked in; they arrive as environment variables.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
# Compile bytecode once at build time; copy (not hard-link) out of the cache mount.
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN uv venv /opt/venv --python /usr/local/bin/python
WORKDIR /src
# Layer 1, the heavy one: third-party dependencies only, read from pyproject.toml. It is
# rebuilt only when pyproject.toml changes, not on every code edit.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra dask --extra server
# Layer 2, small: the project itself, without touching the dependencies again.
COPY relabel ./relabel
COPY tasks ./tasks
COPY flows ./flows
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="relabel-cpu" \
      org.opencontainers.image.description="relabel CPU worker (Prefect process worker, Dask)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed non-root uid/gid: infra/k8s pins runAsUser 10001 to it.
RUN groupadd --gid 10001 relabel \
    && useradd --uid 10001 --gid relabel --create-home --home-dir /home/relabel \
       --shell /usr/sbin/nologin relabel
COPY --from=build /opt/venv /opt/venv
# The deployments' working directory (prefect.yaml's pull step sets it): entry points such as
# flows/pipeline.py are loaded from here; runs/ and .relabel-cache/ are written here, so the
# runtime user owns it. Only prefect.yaml and the entry points: the package itself is in
# /opt/venv, and a relabel/ source folder here (first on sys.path, without tasks/ inside)
# would hide it (tests/test_infra.py checks this without Docker).
WORKDIR /app
COPY --chown=relabel:relabel flows ./flows
COPY --chown=relabel:relabel prefect.yaml ./
# Created here, owned by the runtime user, so that volumes mounted on them start writable.
RUN install -d -o relabel -g relabel /app/runs /app/.relabel-cache
# PWD: prefect.yaml's pull step works in "{{ $PWD }}", and a process started without a
# shell (the worker's flow runs) would not have it.
ENV PATH=/opt/venv/bin:$PATH \
    PWD=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/relabel \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    TF_CPP_MIN_LOG_LEVEL=2
USER relabel
# Fail the build, not the first flow run, if an import is broken in this environment.
RUN python -c "import relabel.cli, relabel.tasks.ingest, relabel.flows, cv2, tensorflow, prefect, prefect_dask, mlflow, psycopg2"
CMD ["prefect", "worker", "start", "--pool", "relabel-local", "--type", "process"]
