{#- Final layer: always last, so no earlier layer can leave the task running as root. The
    sandbox helper comes in here, so changing it does not invalidate the agent layers. -#}
USER root
COPY git-agent-sandbox /usr/local/bin/git-agent-sandbox
USER {{ user }}
ENV HOME=/home/{{ user }} GIT_AGENT_SANDBOX=1
RUN git config --global user.name "git-agent sandbox" && \
    git config --global user.email "agent@sandbox.invalid" && \
    git config --global init.defaultBranch main && \
    git config --global advice.detachedHead false
WORKDIR /workspace
