# remora container image.
#
#   docker build -t remora .
#   docker run --rm remora version
#   docker run -d --name remora -p 15006:15006 remora          # default config
#   docker run -d -v $PWD/my.yaml:/etc/remora/remora.yaml:ro remora
#
# Two stages: `build` compiles a stripped Release binary with exactly the
# Debian packages scripts/deps installs for development; the runtime stage is
# debian:bookworm-slim plus only the shared libraries that binary links.
# See docs/deploy/README.md for a sidecar deployment.

# ---------------------------------------------------------------- build
FROM debian:bookworm AS build

# The toolchain and -dev packages first, from scripts/deps itself, so that the
# image and a developer machine use one package list, and so that this layer
# stays cached while only the source changes.
COPY scripts/deps /usr/local/bin/remora-deps
RUN remora-deps && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Release, no tests; -j2 at most (a Beast/Asio translation unit takes ~1.6 GB
# at -O2). The ccache cache mount only speeds up rebuilds of this stage.
ENV CCACHE_DIR=/root/.cache/ccache
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DREMORA_TESTS=OFF \
 && ninja -C build -j2 remora \
 && strip --strip-all build/src/remora \
 && install -D -m 0755 build/src/remora /out/usr/local/bin/remora

# The Debian packages holding the shared libraries the binary links (ldd +
# dpkg -S), for the runtime stage to install: computed from the binary so the
# list cannot drift from the code. Today it resolves to
#   libc6 libfmt9 libgcc-s1 libjemalloc2 libprometheus-cpp-core1.0
#   libprotobuf32 libspdlog1.10 libstdc++6 libyaml-cpp0.7 zlib1g
# and will pick up libssl3 / libnghttp2-14 / libgrpc++1.51 when the binary
# starts linking them.
RUN set -e; \
    if ldd /out/usr/local/bin/remora | grep -q 'not found'; then \
      ldd /out/usr/local/bin/remora; exit 1; \
    fi; \
    for lib in $(ldd /out/usr/local/bin/remora | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do \
      real=$(readlink -f "$lib"); \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "/usr$real" 2>/dev/null \
        || { echo "no Debian package owns $lib ($real)" >&2; exit 1; }; \
    done | cut -d: -f1 | sort -u > /out/runtime-packages; \
    echo "runtime packages: $(tr '\n' ' ' < /out/runtime-packages)"

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim

COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -q \
 && xargs -a /tmp/runtime-packages \
      env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages

# An unprivileged user with a fixed uid (for runAsUser / file ownership); the
# proxy's ports are all above 1024, so it needs no capability.
RUN groupadd --gid 10001 remora \
 && useradd --uid 10001 --gid remora --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin remora

COPY --from=build /out/usr/local/bin/remora /usr/local/bin/remora
# Root-owned and read-only for the proxy: mount a file or a ConfigMap over it.
COPY config/default.yaml /etc/remora/remora.yaml
RUN remora validate -c /etc/remora/remora.yaml

USER 10001:10001

# 15006 inbound listener, 15001 outbound listener, 9901 admin (/ready,
# /metrics; the default config binds it to 127.0.0.1 inside the container).
EXPOSE 15006 15001 9901

# /ready answers 200 while serving and 503 once draining after SIGTERM.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s \
  CMD ["remora", "health", "--url", "http://127.0.0.1:9901/ready"]

# SIGTERM (docker stop) drains for drain_timeout (default 15s): give
# `docker stop -t` / terminationGracePeriodSeconds a little more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["remora"]
CMD ["run", "-c", "/etc/remora/remora.yaml"]
