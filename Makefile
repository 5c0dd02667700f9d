# The two commands of the README, and the benchmark. Each does its own set-up (scripts/bootstrap.sh).
.PHONY: demo test test-fast bench bootstrap

bootstrap:
	@bash scripts/bootstrap.sh

## Run the whole pipeline locally (broker, intake, worker, unit consumers) with demo traffic; Ctrl-C stops it.
demo: bootstrap
	.venv/bin/signalements demo

## Lint and type-check, then run the whole test suite against a real Kafka broker that the suite starts itself.
test: bootstrap
	@bash scripts/install-test-tools.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/python -m pytest

## The tests that need neither a broker nor the services as processes (under a minute), after lint and types.
test-fast: bootstrap
	@bash scripts/install-test-tools.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -m "not broker and not processes"

## Push synthetic reports through a freshly started pipeline and print one JSON line of figures.
bench: bootstrap
	.venv/bin/signalements bench
