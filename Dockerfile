# syntax=docker/dockerfile:1
# wxidp container image. Build: docker build -t wxidp:local .   (BuildKit, the default builder, is required)

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, so that source changes reuse the download layer and cache.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/wxidp ./cmd/wxidp

# alpine rather than distroless: busybox wget is needed by the compose health check.
FROM alpine:3.20
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 65532 wxidp \
    && adduser -S -D -H -u 65532 -G wxidp -s /sbin/nologin wxidp
COPY --from=build /out/wxidp /usr/local/bin/wxidp
# Inside a container the listeners must not be bound to loopback; publish the admin port with care.
ENV WXIDP_PUBLIC_ADDR=0.0.0.0:4444 \
    WXIDP_ADMIN_ADDR=0.0.0.0:4445
USER 65532:65532
EXPOSE 4444 4445
ENTRYPOINT ["/usr/local/bin/wxidp"]
CMD ["serve"]
