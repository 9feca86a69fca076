# syntax=docker/dockerfile:1
# The hashpivot controller image: `hashpivot run --config /etc/hashpivot/config.yaml`.
# Build: docker build -t ghcr.io/hashpivot/hashpivot:$(version) .
#
# Pinned by version tag; pin by digest in the release pipeline
# (`--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:…`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore).
COPY pyproject.toml README.md constraints.txt ./
COPY orchestrator ./orchestrator
COPY policies ./policies
# Every live adapter ([all]), at the versions CI tested (constraints.txt).
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/hashpivot \
 && /opt/hashpivot/bin/pip install -c constraints.txt "$(ls /wheels/hashpivot-*.whl)[all]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="hashpivot" \
      org.opencontainers.image.description="Switches nodes between Bitcoin mining and rented AI jobs through Kubernetes" \
      org.opencontainers.image.source="https://github.com/hashpivot/hashpivot" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user: Ray and getpass look the uid up in /etc/passwd.
RUN groupadd --gid 65532 hashpivot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin hashpivot
COPY --from=build /opt/hashpivot /opt/hashpivot
# The root filesystem is mounted read-only in the pod: no bytecode writes, HOME on /tmp.
ENV PATH=/opt/hashpivot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Compiled kernels, so a pod loads them at start instead of compiling for tens of
# seconds. Built here, in the final image, against the installed files at their final
# paths: numba keys its cache by each source file's folder and content. Generic x86-64
# code: numba also keys it by CPU model and features, so a cache for the build
# machine's CPU would be ignored on another node's. The pod's read-only root keeps numba
# from using this folder directly; the controller copies it to one of its own under /tmp
# at start (orchestrator/framework/jit.py).
ENV NUMBA_CACHE_DIR=/opt/hashpivot/numba-cache \
    NUMBA_CPU_NAME=generic
RUN hashpivot warm-cache \
 && chmod -R go-w /opt/hashpivot/numba-cache
USER 65532:65532
WORKDIR /tmp
EXPOSE 9108
ENTRYPOINT ["hashpivot"]
CMD ["run", "--config", "/etc/hashpivot/config.yaml"]
