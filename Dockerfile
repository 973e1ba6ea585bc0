# syntax=docker/dockerfile:1
# The cdk-agents runtime as an image, for `SidecarDelivery.image(...)` (instead of the bundle in a
# ConfigMap). Build after `npm run build`:
#   docker build -t registry.example.com/cdk-agents-sidecar:0.1.0 .
# Same pinned Node image, flags and paths as the ConfigMap delivery, so both run the runtime alike.
FROM docker.io/library/node:20.20.2-bookworm-slim

LABEL org.opencontainers.image.title="cdk-agents-sidecar" \
      org.opencontainers.image.description="cdk-agents runtime: LLM sidecar and gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV NODE_ENV=production
# One file, no node_modules; root-owned and read-only for the runtime user.
COPY --chown=root:root --chmod=0444 dist/sidecar.js /opt/cdk-agents/sidecar.js

# Numeric (the `node` user): Kubernetes can only verify runAsNonRoot against a numeric user.
USER 1000:1000
WORKDIR /tmp
# 8787: LLM and tool calls; 8788: /healthz, /readyz, /metrics and the approvals API.
EXPOSE 8787 8788

# Flags as SIDECAR_NODE_FLAGS in lib/spec/runtime-command.ts (a test keeps them in step).
ENTRYPOINT ["node", "--max-semi-space-size=4", "/opt/cdk-agents/sidecar.js"]
CMD ["--config", "/etc/cdk-agents/config/sidecar.json"]
