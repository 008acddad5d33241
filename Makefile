# sinkd's developer entry points. `make test` is what CI runs (.ci/run): it
# starts the local stack of real servers (scripts/stack/stack.sh) and runs the
# unit tests, then the integration tests against that stack.

GO          ?= go
STACK       := scripts/stack/stack.sh
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 20s
BENCHTIME   ?= 1s

# Integration packages run one at a time (-p 1): they share one stack, and a
# fault test that stops a server must not break another package's run.
.PHONY: all build browser test unit integration e2e-large demo bench lint fuzz stack-up stack-down stack-status

all: build

# The version, commit and build date that `sinkd version` prints.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/sinkd/sinkd/daemon.Version=$(VERSION) \
           -X github.com/sinkd/sinkd/daemon.buildCommit=$(COMMIT) \
           -X github.com/sinkd/sinkd/daemon.buildDate=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sinkd .

test: stack-up browser
	@echo
	@echo "==> unit tests (race detector)"
	$(GO) test -race -count=1 ./...
	@echo
	@echo "==> Kubernetes manifests against the API's types (a module of its own)"
	cd deploy/kubernetes/schemacheck && $(GO) test -count=1 ./...
	@echo
	@echo "==> integration tests (local stack: $(STACK) env)"
	$(GO) test -tags integration -count=1 -p 1 -timeout 40m ./...

unit:
	@echo "==> unit tests (race detector)"
	$(GO) test -race -count=1 ./...
	cd deploy/kubernetes/schemacheck && $(GO) test -count=1 ./...

integration: stack-up
	@echo "==> integration tests (local stack: $(STACK) env)"
	$(GO) test -tags integration -count=1 -p 1 -timeout 40m ./...

demo:
	$(GO) run . demo

# A soak of its own, not part of make test: a drain of ~25,600 open files,
# which needs an object store faster than the local MinIO on two cores.
e2e-large: stack-up
	$(GO) test -tags 'integration large' -count=1 -p 1 -timeout 30m -run TestDrainTwentyThousandOpenBuckets ./daemon/e2e/

# Benchmarks never gate CI. scripts/bench/run.sh runs the Go
# micro-benchmarks, then the end-to-end throughput and memory scenarios, and
# writes docs/benchmarks.md.
bench:
	BENCHTIME=$(BENCHTIME) bash scripts/bench/run.sh

lint:
	$(GO) mod tidy -diff
	cd deploy/kubernetes/schemacheck && $(GO) mod tidy -diff && $(GO) vet ./...
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags integration ./...

# Runs every Fuzz target for FUZZTIME each (go test -fuzz takes one target per
# run; below about 5s Go may fail a target with a spurious "context deadline
# exceeded"). Inputs that fail land in testdata/fuzz/ and stay there as corpus.
fuzz:
	@set -e; found=0; \
	for pkg in $$($(GO) list ./...); do \
		for fn in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			found=1; \
			echo "==> fuzz $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done; \
	if [ $$found = 0 ]; then echo "no Fuzz targets found"; fi

stack-up:
	$(STACK) up

# The status page's test renders it in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "==> installing chromium (the status page test renders the page)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status
