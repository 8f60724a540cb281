{#- Base layer: the OS, git, extra CA certificates, and the unprivileged task user. -#}
FROM {{ base_image }}
USER root
{%- if extra_ca %}
COPY extra-ca.crt /usr/local/share/ca-certificates/git-agent-extra.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/git-agent-extra.crt
{%- endif %}
RUN if ! command -v git >/dev/null 2>&1; then \
      apt-get update && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git ca-certificates && \
      rm -rf /var/lib/apt/lists/*; \
    fi{% if extra_ca %} && update-ca-certificates{% endif %}
RUN groupadd --gid {{ uid }} {{ user }} && \
    useradd --uid {{ uid }} --gid {{ uid }} --create-home --shell /bin/sh {{ user }} && \
    mkdir -p /workspace /opt/git-agent && \
    mkfifo /opt/git-agent/go && \
    chown -R {{ user }}:{{ user }} /workspace /opt/git-agent
