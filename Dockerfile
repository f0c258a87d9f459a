# lkinit as a LinuxKit-style init package: a FROM scratch image with
#   /usr/bin/service             lkinit, built static (musl)
#   /usr/bin/onboot, onshutdown, init, lkinit -> service
#   /sbin/init -> ../usr/bin/service, /init -> usr/bin/service
# lkinit leaves the initramfs itself (it binds the initramfs root onto itself, or copies
# it to a tmpfs if the kernel refuses), so no separate /init program is needed. The OCI runtime is not in this image: in a LinuxKit YAML, list LinuxKit's runc
# package after it (it provides /usr/bin/runc); containerd is not needed.
#   init:
#     - lkinit/init:TAG
#     - linuxkit/runc:TAG
# Build: docker build -t lkinit/init .   (pkg/init builds the same image with linuxkit pkg)
FROM rust:1.95.0-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY scripts/init-layout.sh scripts/init-layout.sh
RUN cargo build --release --locked && scripts/init-layout.sh target/release/lkinit /out \
    && cargo run --release --locked --features docs --bin lkinit-docs -- /out/usr/share

FROM scratch
ENTRYPOINT []
CMD []
WORKDIR /
COPY --from=build /out/ /
