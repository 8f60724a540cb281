{#- Base layer: the OS, git, and the unprivileged task user. Rendered by minijinja. -#}
FROM {{ base_image }}
USER root
RUN if ! command -v git >/dev/null 2>&1; then \
      apt-get update && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git ca-certificates && \
      rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --gid {{ uid }} {{ user }} && \
    useradd --uid {{ uid }} --gid {{ uid }} --create-home --shell /bin/sh {{ user }} && \
    mkdir -p /workspace /home/{{ user }}/.git-agent && \
    mkfifo /home/{{ user }}/.git-agent/go && \
    chown -R {{ user }}:{{ user }} /workspace /home/{{ user }}/.git-agent
COPY git-agent-sandbox /usr/local/bin/git-agent-sandbox
