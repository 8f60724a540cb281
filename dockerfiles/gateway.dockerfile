{#- The egress gateway: git-agent's own proxy and credential vault (dockerfiles/git-agent-gateway,
    Python 3 standard library only), run as an unprivileged user. Built once per base image
    and CA set. Its git serves the object cache's writer (src/sandbox/cache.rs): an image made
    from git-agent's own files only. -#}
FROM {{ base_image }}
USER root
{%- if extra_ca %}
COPY extra-ca.crt /usr/local/share/ca-certificates/git-agent-extra.crt
{%- endif %}
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 git ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    update-ca-certificates && \
    mkdir -p /etc/git-agent-gateway && chown 65534:65534 /etc/git-agent-gateway
COPY git-agent-gateway /usr/local/bin/git-agent-gateway
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/git-agent-gateway"]
CMD ["serve"]
