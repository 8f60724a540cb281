{#- Final layer: always last, applied after the repository's project steps. No RUN: nothing
    in the image runs while it is applied, so nothing a project step planted (a replaced
    /bin/sh, say) can act here. The sandbox helper, the agent-side guards (hooks/) and the
    task user's git identity are written over whatever the earlier layers left; they come in
    here, so changing them does not invalidate the agent layers. readonly-bin/git is the
    read-only git wrapper that `supervise` puts first on PATH for --git-readonly tasks; the
    profile.d snippet keeps it there in login shells, whose /etc/profile resets PATH. The
    user is numeric and the entrypoint empty, so no earlier layer decides who a task runs as
    or what wraps its command (task containers also set both themselves). -#}
COPY git-agent-sandbox /usr/local/bin/git-agent-sandbox
COPY hooks/ /usr/local/lib/git-agent/hooks/
COPY readonly-bin/ /usr/local/lib/git-agent/readonly-bin/
COPY profile.d/ /etc/profile.d/
COPY --chown={{ uid }}:{{ uid }} gitconfig /home/{{ user }}/.gitconfig
USER {{ uid }}:{{ uid }}
ENV HOME=/home/{{ user }} GIT_AGENT_SANDBOX=1
ENTRYPOINT []
CMD []
WORKDIR /workspace
