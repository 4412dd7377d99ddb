# syntax=docker/dockerfile:1.7
# relabel GPU image: what the `relabel-gpu` Kubernetes work pool runs each flow run in
# (infra/k8s/gpu-base-job-template.json). TensorFlow's CUDA build comes from the project's
# `gpu` extra (`tensorflow[and-cuda]`: CUDA, cuDNN and NCCL as pip wheels), so the base is a
# plain Python image; the host only needs the NVIDIA driver and container toolkit.
#
#   docker build -f infra/docker/gpu.Dockerfile -t relabel-gpu:0.1.0 .
#   docker run --rm --gpus all relabel-gpu:0.1.0 infra/gpu-check.sh
#
# Dependencies come from pyproject.toml only; no credentials are baked in.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN uv venv /opt/venv --python /usr/local/bin/python
WORKDIR /src
# Layer 1 (several GB of CUDA wheels): third-party dependencies only, from pyproject.toml;
# rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra gpu --extra dask
# Layer 2, small: the project itself.
COPY relabel ./relabel
COPY tasks ./tasks
COPY flows ./flows
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="relabel-gpu" \
      org.opencontainers.image.description="relabel GPU flow-run image (TensorFlow CUDA build)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 relabel \
    && useradd --uid 10001 --gid relabel --create-home --home-dir /home/relabel \
       --shell /usr/sbin/nologin relabel
COPY --from=build /opt/venv /opt/venv
# The deployments' working directory: prefect.yaml, the flow entry points and the GPU check
# (infra/gpu-check.sh runs benchmarks/gpu_check.py). The package itself is in /opt/venv; a
# relabel/ source folder here (first on sys.path, without tasks/ inside) would hide it.
WORKDIR /app
COPY --chown=relabel:relabel flows ./flows
COPY --chown=relabel:relabel benchmarks ./benchmarks
COPY --chown=relabel:relabel infra/gpu-check.sh ./infra/gpu-check.sh
COPY --chown=relabel:relabel prefect.yaml ./
# Created here, owned by the runtime user, so that volumes mounted on them start writable.
RUN install -d -o relabel -g relabel /app/runs /app/.relabel-cache
# NVIDIA_VISIBLE_DEVICES is deliberately not set: the Kubernetes device plugin (or
# `docker run --gpus`) sets it to the GPUs actually granted; baking in "all" would hand every
# GPU to pods that requested none. The capabilities say which driver libraries to mount.
# PWD: prefect.yaml's pull step works in "{{ $PWD }}", and a process started without a
# shell (the worker's flow runs) would not have it.
ENV PATH=/opt/venv/bin:$PATH \
    PWD=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/relabel \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    TF_CPP_MIN_LOG_LEVEL=2
USER relabel
# Imports only (there is no GPU at build time); infra/gpu-check.sh checks the GPU at run time.
RUN python -c "import relabel.cli, relabel.tasks.ingest, relabel.flows, cv2, tensorflow, prefect, prefect_dask, mlflow"
CMD ["bash", "infra/gpu-check.sh"]
