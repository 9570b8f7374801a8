# syntax=docker/dockerfile:1
# Proxy image. Build from the repository root:
#
#   docker build -f deploy/docker/proxy.Dockerfile -t infergate/proxy:dev .
#
# Like controlplane.Dockerfile: the go.work layout needs every module's
# go.mod, the build needs only proto and dataplane sources.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.work go.work.sum ./
COPY proto/go.mod proto/go.sum proto/
COPY controlplane/go.mod controlplane/go.sum controlplane/
COPY dataplane/go.mod dataplane/go.sum dataplane/
COPY e2e/go.mod e2e/go.sum e2e/
COPY proto/ proto/
COPY dataplane/ dataplane/
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    cd dataplane && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/proxy ./cmd/proxy

# Non-root: listener ports below 1024 are allowed by the pod's
# net.ipv4.ip_unprivileged_port_start sysctl, which the provisioner sets
# when a Gateway listens on one.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/proxy /usr/local/bin/proxy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/proxy"]
