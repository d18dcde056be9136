# syntax=docker/dockerfile:1
# wxidp container image. Build: docker build -t wxidp:local .   (BuildKit, the default builder, is required)
#
# The image runs the OpenSSL build (-tags openssl): tokens are signed by libcrypto through cgo, about three
# times as many RS256 signatures per core as crypto/rsa (docs/BENCHMARKS.md, "Signers"). That makes the binary
# dynamically linked against glibc and libcrypto.so.3, so build and runtime are both Debian bookworm.

FROM golang:1.26-bookworm AS build
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV CGO_ENABLED=1
# Modules first, so that source changes reuse the download layer and cache.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -tags openssl -trimpath -ldflags "-s -w" -o /out/wxidp ./cmd/wxidp \
    && /out/wxidp version \
    && /out/wxidp version | grep -q '^rs256 signer: openssl '

# Debian slim rather than distroless or alpine: the binary needs glibc and libssl3 (libcrypto), and the compose
# health check needs wget.
FROM debian:bookworm-slim
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates libssl3 tzdata wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 wxidp \
    && useradd --system --uid 65532 --gid wxidp --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin wxidp
COPY --from=build /out/wxidp /usr/local/bin/wxidp
# Inside a container the listeners must not be bound to loopback; publish the admin port with care.
ENV WXIDP_PUBLIC_ADDR=0.0.0.0:4444 \
    WXIDP_ADMIN_ADDR=0.0.0.0:4445
USER 65532:65532
EXPOSE 4444 4445
ENTRYPOINT ["/usr/local/bin/wxidp"]
CMD ["serve"]
