# storage-valet: one image, one binary (`valet`), every subcommand.
#
#   docker build -t storage-valet .
#
# Final image: distroless cc (glibc + libgcc, no shell, no package manager),
# not scratch/static. A static build would need the musl target, and the
# build command must stay the README's (`--target` would change it); a
# static glibc binary breaks DNS resolution (NSS). The build stage is
# Debian bookworm, like distroless cc-debian12, so the glibc versions match.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The README's build command, exactly (a test compares the two).
RUN cargo build --release --locked --bin valet

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/valet /usr/local/bin/valet
# The same binary as /webhook, the command of amazon-eks-pod-identity-webhook's
# Deployments: called by that name it runs `valet webhook`, so a Deployment of
# the peer switches image and keeps its command and arguments. (A copy, not a
# symlink: distroless has no shell to make one.)
COPY --from=build /src/target/release/valet /webhook
# distroless "nonroot": UID/GID 65532, the runAsUser of the manifests and chart.
USER 65532:65532
# Webhook HTTPS and metrics ports (see manifests/webhook/deployment.yaml).
EXPOSE 8443 9999
ENTRYPOINT ["/usr/local/bin/valet"]
CMD ["--help"]
