{#- The egress gateway: Debian's tinyproxy (egress by domain) and nginx (the credential
    vault), run as an unprivileged user. Built once per base image and CA set. -#}
FROM {{ base_image }}
USER root
{%- if extra_ca %}
COPY extra-ca.crt /usr/local/share/ca-certificates/git-agent-extra.crt
{%- endif %}
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tinyproxy nginx-light ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    update-ca-certificates && \
    mkdir -p /etc/git-agent-gateway
COPY git-agent-gateway /usr/local/bin/git-agent-gateway
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/git-agent-gateway"]
CMD ["serve"]
