# The vrift tool image: the `vrift` CLI (dist/, bin/, production node_modules) and the
# prebuilt LD_PRELOAD shim(s), for `docker build` stages and CI jobs.
#
#   docker build -t vrift:latest .                                   # public node base
#   DOCKER_BUILDKIT=0 docker build --network host \
#     --build-arg BASE=vrift-test/bookworm-node:latest \
#     --build-arg BUILDER_BASE=vrift-test/bookworm-node:latest -t vrift:latest .
#
# BASE is the run-time base (needs node >= 18.17; Debian bookworm's nodejs 18.19 works),
# BUILDER_BASE the builder's (node; npm, gcc, make, libc headers and the shim variants'
# toolchains are installed with apt when it lacks them, which needs --network host on an
# engine without a bridge).
# `npm ci` needs the npm registry unless its layer is cached. Behind a TLS-intercepting
# proxy pass its CA certificate(s) as PEM text: --build-arg EXTRA_CA_CERTS="$(cat my-ca.crt)"
# (used by npm in the builder stage only; the final image does not carry it).
#
# Layout of the result:
#   /opt/vrift/{package.json,bin,dist,node_modules}   the CLI; /usr/local/bin/vrift -> bin/vrift.js
#   /opt/vrift/shim/build/libvrift.so                 the host variant, where `vrift shim-path` looks
#   /opt/vrift/shim/build/<arch>-<libc>/libvrift.so   every variant built (`vrift shim-path --variant`)
#   /opt/vrift/shim/build/vrift-mkblob[-arm64]        static blob generator (shim/mkblob.c)
#   /usr/lib/vrift/...                                the same files, at the in-image paths
# No LD_PRELOAD is set here: the tool image itself runs without the shim.
# See docs/integrations/docker-build.md for using it in your own Dockerfile.
ARG BASE=node:20-bookworm-slim
ARG BUILDER_BASE=node:20-bookworm-slim

FROM ${BUILDER_BASE} AS builder
# gcc/make/libc headers and npm only when the base lacks them (node:*-slim has npm only).
RUN set -e; need=; \
    command -v gcc >/dev/null || need="$need gcc"; \
    command -v make >/dev/null || need="$need make"; \
    [ -e /usr/include/stdio.h ] || need="$need libc6-dev"; \
    command -v npm >/dev/null || need="$need npm"; \
    if [ -n "$need" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# The other shim variants and the static vrift-mkblob: musl-gcc (amd64-musl, vrift-mkblob),
# the aarch64 cross compiler (arm64-glibc, vrift-mkblob-arm64). A variant whose toolchain
# is missing is skipped by shim/Makefile (arm64-musl also needs scripts/musl-arm64.sh, below).
ARG SHIM_TOOLCHAINS="musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
RUN set -e; need=; for p in $SHIM_TOOLCHAINS; do \
      dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || need="$need $p"; done; \
    if [ -n "$need" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# arm64-musl: Debian has no aarch64 musl cross compiler; the Makefile links with the
# aarch64 gcc and Debian's musl-dev:arm64 specs, unpacked here (private apt state).
COPY scripts/musl-arm64.sh /tmp/musl-arm64.sh
RUN bash /tmp/musl-arm64.sh && rm -rf /var/cache/vrift/musl-arm64.apt /tmp/musl-arm64.sh
WORKDIR /src
# Dependencies first: this layer stays cached while only sources change.
COPY package.json package-lock.json ./
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >/tmp/extra-ca.pem; \
      export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi; \
    npm ci --ignore-scripts --no-audit --no-fund && rm -f /tmp/extra-ca.pem
COPY tsconfig.json ./
COPY bin/ bin/
COPY src/ src/
COPY shim/ shim/
COPY bench/shim.c bench/shim.c
RUN npm run build && make -C shim mkblob \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && mkdir -p /stage/opt/vrift/shim/build /stage/usr/lib/vrift \
 && cp -a package.json bin dist node_modules /stage/opt/vrift/ \
 && cd shim/build \
 && for f in libvrift.so */libvrift.so vrift-mkblob*; do \
      [ -f "$f" ] || continue; \
      install -D -m 0755 "$f" "/stage/opt/vrift/shim/build/$f"; \
      install -D -m 0755 "$f" "/stage/usr/lib/vrift/$f"; \
    done

FROM ${BASE}
COPY --from=builder /stage/opt/vrift/ /opt/vrift/
COPY --from=builder /stage/usr/lib/vrift/ /usr/lib/vrift/
RUN ln -sf /opt/vrift/bin/vrift.js /usr/local/bin/vrift && vrift --version && vrift shim-path \
 && test -x /usr/lib/vrift/vrift-mkblob
LABEL org.opencontainers.image.title="vrift" \
      org.opencontainers.image.description="vrift CLI and LD_PRELOAD stat shim (PSFS blob)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["vrift"]
CMD ["--help"]
