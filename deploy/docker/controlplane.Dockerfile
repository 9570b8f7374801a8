# syntax=docker/dockerfile:1
# Control plane (and infergatectl) image. Build from the repository root:
#
#   docker build -f deploy/docker/controlplane.Dockerfile -t infergate/controlplane:dev .
#
# The build uses the repository's go.work: every module listed there must be
# present, so all go.mod/go.sum files are copied, but only the sources this
# binary needs (proto, controlplane).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.work go.work.sum ./
COPY proto/go.mod proto/go.sum proto/
COPY controlplane/go.mod controlplane/go.sum controlplane/
COPY dataplane/go.mod dataplane/go.sum dataplane/
COPY e2e/go.mod e2e/go.sum e2e/
COPY proto/ proto/
COPY controlplane/ controlplane/
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    cd controlplane && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/controlplane ./cmd/controlplane && \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags="-s -w" -o /out/infergatectl ./cmd/infergatectl

# Static binaries need no libc: distroless static, running as the nonroot
# user (65532) it defines. The chart also sets runAsNonRoot and a read-only
# root filesystem; the control plane writes nothing to disk.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/controlplane /out/infergatectl /usr/local/bin/
USER 65532:65532
EXPOSE 18000
ENTRYPOINT ["/usr/local/bin/controlplane"]
