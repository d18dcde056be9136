# wxidp — developer entry points. `make test` is the test command (it starts PostgreSQL if it can).
GO          ?= go
BIN         ?= bin/wxidp
IMAGE       ?= wxidp:local
STATICCHECK ?= $(or $(shell command -v staticcheck 2>/dev/null),$(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: run test lint build bench bench-go docker

## run: start the server in dev mode (in-memory storage, fake WeChat, generated secrets)
run:
	$(GO) run ./cmd/wxidp serve --dev

## test: all tests with the race detector against PostgreSQL ($$WXIDP_TEST_DATABASE_URL)
test:
	./scripts/ensure-postgres && ./scripts/ensure-redis && ./scripts/ensure-chromium && ./scripts/ensure-node && ./scripts/ensure-recipes && $(GO) test -race -count=1 ./...

## lint: gofmt, go vet, staticcheck (install: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)
lint:
	@files="$$(gofmt -l .)"; if [ -n "$$files" ]; then echo "gofmt -l lists (run gofmt -w):"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## build: static binary in bin/wxidp
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/wxidp

## bench: load benchmark of a running server (docs/BENCHMARKS.md); flags in BENCH_FLAGS, e.g. BENCH_FLAGS="--runs 3"
bench:
	$(GO) run ./cmd/wxidp-bench $(BENCH_FLAGS)

## bench-go: the Go benchmarks only, 2 s each
bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

## docker: container image (needs a Docker engine)
docker:
	docker build -t $(IMAGE) .
