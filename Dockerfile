# Bosun's container image: built with the Rust toolchain the project is tested with, run on a minimal
# distroless base as the non-root user 65532, `bosun run` as its entrypoint.
#
#   docker build -t bosun:0.1.0 .
#   docker run --rm bosun:0.1.0 --help
#
# Both stages' base images are build arguments (BUILD_IMAGE, RUNTIME_IMAGE), for a registry of your own.
# The target `prebuilt` puts a bosun binary already built (the file `bosun` of the build context) on
# the runtime base instead, with no Rust toolchain in a container: the tests build it so, on a base
# made from Debian's packages (scripts/container).
#
# What the binary links, and where the runtime image gets it:
#   libssl.so.3, libcrypto.so.3   git2's https transport uses the system OpenSSL  -> distroless/cc (libssl3)
#   libgcc_s.so.1                 Rust's unwinder                                 -> distroless/cc (libgcc-s1)
#   libc.so.6, libm.so.6, ld-linux glibc                                          -> distroless/cc (libc6)
#   libgit2, libssh2              compiled in by libgit2-sys and libssh2-sys
#   zlib                          compiled in (LIBZ_SYS_STATIC=1 below)
# The build fails if the binary comes to need any other shared library.
# Both stages are Debian 12 (bookworm), so the OpenSSL the binary is built against is the one it runs with.

ARG RUST_VERSION=1.95
ARG BUILD_IMAGE=docker.io/library/rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
COPY . .
RUN cargo build --release --locked --bin bosun \
 && install -m 0755 target/release/bosun /bosun \
 && readelf -d /bosun | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort >/needed \
 && echo "bosun links:" $(cat /needed) \
 && if grep -vxE 'libssl\.so\.3|libcrypto\.so\.3|libgcc_s\.so\.1|libm\.so\.6|libc\.so\.6|ld-linux.*' /needed; then \
        echo "bosun links a library the runtime image may lack (above): add it to the runtime stage" >&2; exit 1; \
    fi

FROM ${RUNTIME_IMAGE} AS prebuilt
COPY --chmod=0755 bosun /usr/local/bin/bosun
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bosun", "run"]

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /bosun /usr/local/bin/bosun
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bosun", "run"]
