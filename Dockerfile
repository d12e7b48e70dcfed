# otpd in a container, built from this checkout on Debian 12 (the distribution
# otpd targets: hiredis 0.14, yaml-cpp 0.7, fmt 9).
#
#   docker build -t otpd .
#   docker run --rm --shm-size 64m otpd     # the packaged /etc/otpd/otpd.yaml
#   docker compose up -d otpd               # the demo tree (docker-compose.yml)
#
# The build stage installs with `cmake --install` into /staging (prefix /usr);
# the runtime stage takes the programs, the config and the docs from there
# and nothing else: no compiler, no headers, no static libraries.
# tests/packaging/docker_test.sh checks that every /staging path below is in
# the install manifest, and that the runtime packages cover the programs'
# shared libraries.

FROM debian:12 AS build
# The demo profile of scripts/setup.sh is what building otpd needs; scdoc
# builds the man pages.
COPY scripts/setup.sh /tmp/setup.sh
RUN bash /tmp/setup.sh demo \
    && apt-get install -y -q --no-install-recommends scdoc \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_INSTALL_PREFIX=/usr -DOTPD_BUILD_TESTS=OFF -DOTPD_BUILD_BENCH=OFF \
    && cmake --build /build -j"$(nproc)" \
    && DESTDIR=/staging cmake --install /build --strip

FROM debian:12-slim
# The shared libraries of the programs (libstdc++ and libc are in the base
# image; otpd-web's cpp-httplib brings libssl3, zlib1g and libbrotli1), and
# redis-server, which the demo tree runs as a child.
RUN apt-get update \
    && apt-get install -y -q --no-install-recommends \
         libuv1 libhiredis0.14 libyaml-cpp0.7 libfmt9 redis-server \
         libcpp-httplib0.11 libprometheus-cpp-core1.0 libssl3 zlib1g libbrotli1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /staging/usr/bin/ /usr/bin/
COPY --from=build /staging/etc/otpd/ /etc/otpd/
COPY --from=build /staging/usr/share/doc/otpd/ /usr/share/doc/otpd/
# A non-root user owns the runtime dir and the working dir, where the demo
# tree writes its logs (paths in a config are relative to its directory).
RUN useradd --system --user-group --create-home --home-dir /var/lib/otpd \
      --shell /usr/sbin/nologin otpd \
    && install -d -m 0700 -o otpd -g otpd /run/otpd
COPY --chown=otpd:otpd configs/demo.yaml /var/lib/otpd/demo.yaml
USER otpd
WORKDIR /var/lib/otpd
# otpctl, otp-table and otp-redis in `docker exec` find otpd through this.
ENV OTPD_RUNTIME_DIR=/run/otpd
# otpd answers on its control socket once the tree is up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["otpctl", "status"]
# otpd is PID 1: it reaps orphaned processes, and on SIGTERM (docker stop) it
# stops the tree in reverse start order before it exits. No init in between.
STOPSIGNAL SIGTERM
CMD ["otpd", "/etc/otpd/otpd.yaml"]
