# Agent layer: Claude Code (npm package @anthropic-ai/claude-code). Runs as root after
# git-agent's base layer; the final layer switches back to the task user.
#
# TLS: nothing here touches certificates. When `agent.extraCaCerts` is set, the base layer has
# already copied `extra-ca.crt` into /usr/local/share/ca-certificates, run
# update-ca-certificates and set NODE_EXTRA_CA_CERTS, which is what npm needs behind a
# TLS-inspecting proxy (otherwise: SELF_SIGNED_CERT_IN_CHAIN). apt uses the image's
# http:// Debian mirror, so it needs no CA.
#
# Node: Debian bookworm's nodejs 18 is enough. Since 2.1.x the package ships a native `claude`
# binary (optional dependency @anthropic-ai/claude-code-linux-x64 / -arm64, glibc) and Node only
# runs its postinstall script. Packages >= 2.1.198 declare engines node>=22, which npm merely
# warns about (EBADENGINE, hidden by --loglevel=error); 2.1.330 was verified on bookworm's
# Node 18.20.4. Override with `--build-arg CLAUDE_CODE_VERSION=...`.
USER root
ARG CLAUDE_CODE_VERSION=2.1.330
RUN command -v npm >/dev/null 2>&1 || ( \
      apt-get update && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm && \
      rm -rf /var/lib/apt/lists/* )
RUN npm install -g --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" && \
    npm cache clean --force 2>/dev/null && \
    claude --version
