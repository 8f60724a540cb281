// git-agent's first-run answers for Claude Code's terminal UI, written by the sandbox
// helper's `supervise` before an interactive run (see `claude_first_run` in
// dockerfiles/git-agent-sandbox):
//
//   node claude-first-run.js FILE WORKSPACE
//
// marks in Claude Code's state FILE (~/.claude.json; created when absent, every other value
// kept) what a person would otherwise have to answer before the prompt reaches the agent:
// onboarding done, the bypass-permissions warning seen (the task runs in a sandbox, which is
// the point of that mode), WORKSPACE trusted, and the API key in the environment approved.
// That key is the task's stand-in for the real one, which stays in the vault outside the
// sandbox; Claude Code remembers an approved key by its last 20 characters. Idempotent.
'use strict';

const fs = require('fs');

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function main([file, workspace]) {
  if (!file || !workspace) {
    process.stderr.write('usage: claude-first-run.js FILE WORKSPACE\n');
    return 64;
  }
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code !== 'ENOENT') {
      process.stderr.write(`git-agent: cannot read ${file}: ${e.message}\n`);
      return 1;
    }
  }
  let state = {};
  if (text.trim() !== '') {
    try {
      state = JSON.parse(text);
    } catch (e) {
      process.stderr.write(`git-agent: ${file} is not JSON, left as it is: ${e.message}\n`);
      return 1;
    }
    if (!isObject(state)) {
      process.stderr.write(`git-agent: ${file} holds no JSON object, left as it is\n`);
      return 1;
    }
  }
  state.hasCompletedOnboarding = true;
  state.bypassPermissionsModeAccepted = true;
  if (!isObject(state.projects)) state.projects = {};
  if (!isObject(state.projects[workspace])) state.projects[workspace] = {};
  state.projects[workspace].hasTrustDialogAccepted = true;
  state.projects[workspace].hasCompletedProjectOnboarding = true;
  const key = process.env.ANTHROPIC_API_KEY || '';
  if (key.length >= 20) {
    const tail = key.slice(-20);
    let answers = state.customApiKeyResponses;
    if (!isObject(answers)) answers = {};
    const approved = Array.isArray(answers.approved) ? answers.approved : [];
    const rejected = Array.isArray(answers.rejected) ? answers.rejected : [];
    if (!approved.includes(tail)) approved.push(tail);
    answers.approved = approved;
    answers.rejected = rejected.filter((k) => k !== tail);
    state.customApiKeyResponses = answers;
  }
  const tmp = `${file}.git-agent.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
