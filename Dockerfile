# syntax=docker/dockerfile:1
#
# ninefold in a small image: built in Debian's Rust image, run on debian:bookworm-slim
# as an unprivileged user, with a health check on the admin listener's /health.
#
#   docker build -t ninefold .
#   docker run --rm -p 8080:8080 -v $PWD/my.yaml:/etc/ninefold/ninefold.yaml ninefold
#
# SIGTERM drains (give `docker stop -t` more than the file's shutdown_grace); SIGHUP
# (`docker kill -s HUP`) reloads the file.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# The drill demo embeds the shipped drills.
COPY examples ./examples
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/ninefold /usr/local/bin/ninefold
COPY examples/container.yaml /etc/ninefold/ninefold.yaml
# 65532: a fixed unprivileged uid and gid (the "nonroot" of distroless images).
RUN mkdir -p /var/lib/ninefold && chown 65532:65532 /var/lib/ninefold
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/lib/ninefold"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/ninefold", "health", "--admin", "127.0.0.1:9901"]
ENTRYPOINT ["/usr/local/bin/ninefold"]
CMD ["serve", "-c", "/etc/ninefold/ninefold.yaml"]
