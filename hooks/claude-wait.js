// git-agent's wait-for-input hooks for Claude Code, added to its settings by the sandbox
// helper's `supervise` (see `claude_wait_hooks` in dockerfiles/git-agent-sandbox):
//
//   node claude-wait.js FILE [--stop]
//
// adds to Claude Code's settings FILE (created when absent; every other setting is kept):
// a Notification hook (Claude Code asks for a permission, or has waited idle for the next
// prompt) running `git-agent-sandbox wait-notify --claude`, which opens a waiting episode the
// host's follower reports through the user's agent.onWait; UserPromptSubmit and PostToolUse
// hooks running `git-agent-sandbox wait-notify --claude-done`, which close it; with --stop
// (an interactive run) also a Stop hook opening one when a turn ends. Idempotent.
'use strict';

const fs = require('fs');

const HELPER = '/usr/local/bin/git-agent-sandbox';
const OPEN = `${HELPER} wait-notify --claude`;
const DONE = `${HELPER} wait-notify --claude-done`;

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function main([file, ...flags]) {
  if (!file) {
    process.stderr.write('usage: claude-wait.js FILE [--stop]\n');
    return 64;
  }
  let settings = {};
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code !== 'ENOENT') {
      process.stderr.write(`git-agent: cannot read ${file}: ${e.message}\n`);
      return 1;
    }
  }
  if (text.trim() !== '') {
    try {
      settings = JSON.parse(text);
    } catch {
      settings = undefined;
    }
    if (!isObject(settings)) {
      process.stderr.write(`git-agent: ${file} is not a JSON object; the wait hooks were not added\n`);
      return 1;
    }
  }
  if (settings.hooks === undefined) settings.hooks = {};
  if (!isObject(settings.hooks)) {
    process.stderr.write(`git-agent: ${file}: "hooks" is not an object\n`);
    return 1;
  }
  const wanted = [['Notification', OPEN], ['UserPromptSubmit', DONE], ['PostToolUse', DONE]];
  if (flags.includes('--stop')) wanted.push(['Stop', OPEN]);
  for (const [event, command] of wanted) {
    if (settings.hooks[event] === undefined) settings.hooks[event] = [];
    const list = settings.hooks[event];
    if (!Array.isArray(list)) {
      process.stderr.write(`git-agent: ${file}: "hooks.${event}" is not a list\n`);
      return 1;
    }
    const present = list.some((m) => isObject(m) && Array.isArray(m.hooks)
      && m.hooks.some((h) => isObject(h) && h.command === command));
    if (!present) list.push({ matcher: '', hooks: [{ type: 'command', command }] });
  }
  const tmp = `${file}.git-agent.tmp`;
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(settings, null, 2)}\n`);
    fs.renameSync(tmp, file);
  } catch (e) {
    process.stderr.write(`git-agent: cannot replace ${file}: ${e.message}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
