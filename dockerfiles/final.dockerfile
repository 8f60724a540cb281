{#- Final layer: always last, so no earlier layer can leave the task running as root. The
    sandbox helper and the agent-side guards (hooks/) come in here, so changing them does not
    invalidate the agent layers. readonly-bin/git is the read-only git wrapper that
    `supervise` puts first on PATH for --git-readonly tasks; the profile.d snippet keeps it
    there in login shells, whose /etc/profile resets PATH. -#}
USER root
COPY git-agent-sandbox /usr/local/bin/git-agent-sandbox
COPY hooks/ /usr/local/lib/git-agent/hooks/
RUN mkdir -p /usr/local/lib/git-agent/readonly-bin && \
    ln -sf ../hooks/git-readonly /usr/local/lib/git-agent/readonly-bin/git && \
    printf '%s\n' 'if [ "${GIT_AGENT_GIT_READONLY:-}" = 1 ]; then case ":$PATH:" in *:/usr/local/lib/git-agent/readonly-bin:*) ;; *) PATH="/usr/local/lib/git-agent/readonly-bin:$PATH" ;; esac; fi' \
      > /etc/profile.d/git-agent-readonly.sh
USER {{ user }}
ENV HOME=/home/{{ user }} GIT_AGENT_SANDBOX=1
RUN git config --global user.name "git-agent sandbox" && \
    git config --global user.email "agent@sandbox.invalid" && \
    git config --global init.defaultBranch main && \
    git config --global advice.detachedHead false
WORKDIR /workspace
