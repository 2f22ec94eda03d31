# PANTHER Task 1 inference image for grand-challenge.org: `python process.py` reads
# /input/images/<...mri...>/<uuid>.mha and writes
# /output/images/pancreatic-tumor-segmentation/tumor_seg.mha. See docs/docker.md.
#
# BASE_IMAGE: any Debian-like image with python3.11 and the venv module. The public default
# comes from Docker Hub; docker/make_base_image.sh makes an equivalent one from Debian's archive
# for machines without Docker Hub (build.sh passes BASE_IMAGE through).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# ---- shared with training/Dockerfile, line for line: the virtual environment -------------
# Identical instructions give identical layers, so the training image reuses this one (about
# 5.6 GB, torch with its CUDA libraries) instead of storing a second copy. It depends on
# requirements.txt, requirements-dicom.txt and docker/slim_venv.sh alone: a change of code
# rebuilds in seconds. tests/test_dockerfiles.py keeps the two prefixes identical.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY requirements.txt requirements-dicom.txt docker/slim_venv.sh /tmp/req/
# The base image's CA bundle is used when present (a base from make_base_image.sh carries the
# build host's bundle, which may include a TLS proxy's CA). pip byte-compiles what it
# installs, so the read-only image never writes .pyc. slim_venv.sh then removes, in this same
# layer, what inference never loads (about 2 GB: triton, cuSOLVER, headers, ...; the list and
# the reasons in docs/docker.md).
RUN set -eu; \
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip install --no-cache-dir -r /tmp/req/requirements.txt -r /tmp/req/requirements-dicom.txt; \
    sh /tmp/req/slim_venv.sh /opt/venv; \
    rm -rf /root/.cache /tmp/req
# Nothing may need to write outside /tmp and /output at run time: the root file system is
# read-only on grand-challenge (and in test.sh), and /tmp is an empty tmpfs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.config/matplotlib \
    TORCH_HOME=/tmp/.cache/torch \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/torchinductor \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    CUDA_CACHE_PATH=/tmp/.cache/nv \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
ARG APP_UID=1001
RUN groupadd --gid ${APP_UID} user \
    && useradd --uid ${APP_UID} --gid ${APP_UID} --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin user
WORKDIR /opt/app
# ---- end of the shared prefix ------------------------------------------------------------

RUN mkdir -p /opt/ml/model /input /output && chown user:user /output
COPY process.py ./
# The package by role, without training/ and evaluation/ (tests/test_dockerfiles.py follows the
# imports of process.py and the smoke check and checks that these folders hold them all). tools/
# comes along for the benchmark: `docker run --gpus all --entrypoint python IMAGE -m
# panther_seg.tools.benchmark --device cuda --report /output` measures a GPU host.
COPY panther_seg/*.py ./panther_seg/
COPY panther_seg/io/ ./panther_seg/io/
COPY panther_seg/contract/ ./panther_seg/contract/
COPY panther_seg/inference/ ./panther_seg/inference/
COPY panther_seg/network/ ./panther_seg/network/
COPY panther_seg/reporting/ ./panther_seg/reporting/
COPY panther_seg/system/ ./panther_seg/system/
COPY panther_seg/tools/ ./panther_seg/tools/
COPY resources/ ./resources/
# Byte-compile the application too (the file system is read-only at run time), and check
# that the entry point and its imports load in this image.
RUN python -m compileall -q /opt/app \
    && chmod -R a+rX /opt/app \
    && python process.py --help >/dev/null
USER user
ENTRYPOINT ["python", "process.py"]
