# zhenping scoring service, CPU only.
#   docker build -t zhenping .
#   docker run --rm -p 8000:8000 -v zhenping-data:/data zhenping   # web page at http://localhost:8000/
# Feedback (feedback.db) and the model store live in the /data volume and outlive the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

# CPU-only torch first, so that the package's torch requirement is already met
# and pip does not pull the much larger CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Every runtime dependency at the version in requirements.lock (what CI audits);
# torch==2.13.0 there is already met by the CPU build above.
WORKDIR /build
COPY requirements.lock ./
RUN pip install -r requirements.lock

# The package, with the shipped model (model/default is package data), on the locked
# dependencies only: --no-deps, then pip check fails the build if the lock misses one.
COPY pyproject.toml README.md ./
COPY zhenping ./zhenping
COPY model ./model
COPY api ./api
COPY training ./training
# A C compiler for the build only: the campaign window's band table (model/campaign/_bands.c)
# is compiled, then the compiler leaves in the same layer. The build fails if the table did not load.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && pip install --no-deps . \
    && apt-get purge -y -qq gcc libc6-dev >/dev/null && apt-get autoremove -y -qq >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && pip check \
    && cd / && python -c "import sys; from zhenping.api.settings import DEFAULT_MODEL_DIR as d; sys.exit(0 if (d / 'scorer_config.json').is_file() else f'no model in {d}: export one to model/default before building')" \
    && python -c "from zhenping.model.campaign.window import MemoryStore; assert MemoryStore().index == 'compiled', 'the compiled band table did not build'" \
    && rm -rf /build

RUN useradd --create-home --uid 10001 zhenping \
    && mkdir -p /data && chown zhenping:zhenping /data

# Data that must outlive the container: feedback.db (SQLite) and the model store.
ENV ZHENPING_DATA_DIR=/data \
    ZHENPING_MODEL_STORE=/data/store
VOLUME ["/data"]

USER zhenping
WORKDIR /home/zhenping

EXPOSE 8000

# Liveness only; /ready (200 once the model is loaded) is for load balancers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

# SIGTERM (docker stop) drains in-flight batches; give it time: docker stop -t 35.
CMD ["zhenping", "serve", "--host", "0.0.0.0", "--port", "8000"]
