# The two commands a new machine needs (see README): `make demo` and `make test`.
# Both run scripts/setup.sh first, which installs what is missing and is a no-op otherwise.
SHELL := /bin/bash
ENV := source .venv/culprit-env.sh

.PHONY: setup demo test bench eval fuzz

setup:
	@scripts/setup.sh

## Simulate seed 001's config-change incident and investigate it end to end (debug build).
demo: setup
	@$(ENV) && cargo run --quiet -- demo

## Formatting and lints first (either failing fails the target), then every test (unit,
## integration, golden, tidy, simulated accuracy floor).
test:
	@scripts/setup.sh --llm
	@$(ENV) && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test --no-fail-fast

## Speed and memory figures for the README. Release build: LanceDB's engine is left unoptimised in
## the dev profile, and the learned benchmark (IVF-PQ over 1M vectors) needs it optimised; the first
## release build takes ~45 min on 2 cores.
bench: setup
	@$(ENV) && cargo run --release --quiet -- bench && cargo run --release --quiet -- bench --learned

## Accuracy of culprit and the baselines on the simulated suite and the public datasets (README's
## tables), and the drill-down datasets (RobustSpot RS, Kontrast).
eval: setup
	@$(ENV) && cargo run --quiet -- eval evals/simulated.toml evals/red_herrings.toml evals/postmortems ../shared/datasets/nezha/trainticket ../shared/datasets/nezha/onlineboutique ../shared/datasets/rcd_sockshop ../shared/datasets/changerca ../shared/datasets/robustspot_rs ../shared/datasets/kontrast_software_change

## Fuzz every reader (readers/fuzz; nightly and cargo-fuzz, installed when missing): 60 s per target
## by default (FUZZ_SECONDS, FUZZ_JOBS, FUZZ_TARGETS; see scripts/fuzz.sh). New coverage is merged
## into readers/fuzz/corpus/, crash inputs kept in readers/fuzz/crashes/; `make test` replays both.
fuzz:
	@scripts/fuzz.sh
