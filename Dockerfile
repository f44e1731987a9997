# ordo-server: a small image with the one binary.
#   docker build -t ordo-server .
#   docker run -p 8080:8080 ordo-server --rules-dir /srv/examples
# NATS sync is built in (the nats-sync feature is on by default).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo --locked build-server \
 && strip target/release/ordo-server

# CA certificates (for tls:// NATS and PostgreSQL with sslmode), a non-root user, and
# the build image's glibc (the binary links glibc statically, which may still load its
# NSS modules for a name lookup); nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ordo-server /usr/local/bin/ordo-server
COPY examples/rules /srv/examples
ENV ORDO_HOST=0.0.0.0 \
    ORDO_LOG_FORMAT=json
EXPOSE 8080 50051
USER nonroot
ENTRYPOINT ["/usr/local/bin/ordo-server"]
