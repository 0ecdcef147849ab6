# The image the Helm chart runs (helm/usher). Build: docker build -t usher .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin usher

FROM debian:bookworm-slim
# The chart runs as this user, with a read-only root and the data on a volume.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/usher usher \
 && mkdir -p /var/lib/usher && chown usher:usher /var/lib/usher
COPY --from=build /src/target/release/usher /usr/local/bin/usher
USER 10001
ENV USHER_DATA_DIR=/var/lib/usher USHER_HTTP_ADDR=0.0.0.0:5280
EXPOSE 5222 5270 5280 5290
CMD ["usher", "serve"]
