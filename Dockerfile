# The volunteer client with CUDA PyTorch.
#   build:  docker build -t volunteer .
#   run:    docker run --gpus all --shm-size=1g -it -v volunteer-data:/data volunteer --project <id>
# docker/README.md covers headless runs, GPU selection, ports, NAT, the data volume and the compose swarm.
# Builds the same with the classic builder and with BuildKit, offline: no '# syntax=' frontend, no BuildKit-only flag.
# Without Docker Hub: docker/build-cpu-base.sh, then --build-arg BASE_IMAGE=volunteer-cpu-base:bookworm-torch2.13.0.

# The official PyTorch runtime image: torch 2.13.0 (the version CI tests on CPU) built for CUDA 12.6 with cuDNN 9.
# CUDA 12.6 builds still ship kernels for older cards (GTX 10xx and up) and need a driver of R525 or newer;
# RTX 50xx (Blackwell) cards need a CUDA 12.8+ build: --build-arg BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime
# (driver R580 or newer). Any tag works whose torch satisfies pyproject's range; the build checks it.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# tini runs as PID 1: it passes SIGTERM on to the client (a PID 1 without a handler would ignore it) and reaps
# the processes hivemind leaves behind (p2pd, DHT workers). The user is uid 1000, replacing any base-image user
# that holds that id (Ubuntu 24.04 images ship one named "ubuntu"), and owns /data before it becomes a volume,
# so a named volume starts out writable by it.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && if existing_user="$(id -nu 1000 2>/dev/null)"; then userdel "${existing_user}"; fi \
    && if existing_group="$(getent group 1000)"; then groupdel "${existing_group%%:*}"; fi \
    && groupadd --gid 1000 volunteer \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash volunteer \
    && mkdir -p /data/hf \
    && chown -R 1000:1000 /data

ENV VOLUNTEER_HOME=/data \
    HF_HOME=/data/hf \
    VOLUNTEER_HOST_MADDRS="/ip4/0.0.0.0/tcp/31337 /ip4/0.0.0.0/udp/31337/quic-v1" \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, from pyproject.toml alone: editing the code does not reinstall them. requirements.py pins
# torch to the base image's CUDA build, so pip keeps it. PIP_BREAK_SYSTEM_PACKAGES: torch lives in the image's
# only Python, which some base images mark as externally managed (PEP 668).
WORKDIR /opt/volunteer
COPY pyproject.toml docker/requirements.py ./
RUN python3 requirements.py pyproject.toml > /tmp/requirements.txt \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY volunteer ./volunteer
COPY tui ./tui
COPY docker/swarm_entrypoint.py ./docker/
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir --no-deps . \
    && install -m 0755 docker/swarm_entrypoint.py /usr/local/bin/volunteer-swarm \
    && rm -rf build ./*.egg-info docker \
    && volunteer --version \
    && python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

USER 1000:1000
WORKDIR /data
VOLUME ["/data"]
# hivemind's fixed port (VOLUNTEER_HOST_MADDRS): TCP, and UDP for QUIC. The status endpoint (8471) listens on
# the container's 127.0.0.1 only: reach it with 'docker exec -it <container> volunteer attach'.
# 9471: the read-only metrics endpoint, served only when asked (-e VOLUNTEER_METRICS_ADDRESS=0.0.0.0:9471).
EXPOSE 31337/tcp 31337/udp 9471/tcp
# The client finishes its step, says goodbye to its peers and exits within Docker's 10 s stop timeout.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
    CMD ["python3", "-m", "volunteer.healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "volunteer"]

# Labels last: a new REVISION or CREATED per build changes no layer above (an ARG invalidates the RUNs after it).
ARG BASE_IMAGE
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
ARG URL=unknown
LABEL org.opencontainers.image.title="volunteer" \
      org.opencontainers.image.description="Volunteer-computing client for collaborative deep learning (hivemind + PyTorch Lightning)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="The volunteer authors" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
