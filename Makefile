# Starforge: the two commands that matter are `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/starforge/starforge/master/cli.Version=$(VERSION) -X github.com/starforge/starforge/worker.Version=$(VERSION)
TESTFLAGS ?= -race -timeout 15m

.PHONY: all build test demo bench fuzz lint fmt vet staticcheck clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/starforge ./master/cmd/starforge
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/starforge-worker ./worker/cmd/starforge-worker

# Builds both binaries, then runs every test with the race detector.
test: build
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; false)
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

# Starts a master, a worker and a local git repository, forces a build and
# prints the web UI's URL; Ctrl-C stops everything.
demo: build
	./scripts/demo.sh

# Prints one table of the figures DESIGN.md sets targets for (raw output
# in bench.out, for benchstat).
bench: build
	GO=$(GO) ./scripts/bench.sh

# Runs every fuzz target for FUZZTIME each (CI runs a short pass).
FUZZTIME ?= 1m
FUZZ_TARGETS := \
	./worker/proto:FuzzDecode \
	./worker/proto:FuzzConn \
	./worker/command:FuzzDefaultScanner \
	./webui:FuzzAPIQuery \
	./master/webhook:FuzzParse \
	./config:FuzzLoad
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

lint: vet staticcheck
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf $(BIN)
