// git-agent's read-only git guard: the parts that speak JSON, for Claude Code (which brings
// node, so these run wherever they are needed). Started by `git-readonly` (see that file) as
//
//   node git-readonly-claude.js GUARD hook            the PreToolUse hook: reads the hook's
//                                                     JSON on stdin, asks GUARD which git
//                                                     commands the Bash command would run
//                                                     that change the repository, and exits
//                                                     2 with the reason (the call is blocked),
//                                                     0 (allowed) or 1 (input unreadable: a
//                                                     non-blocking error)
//   node git-readonly-claude.js GUARD install FILE    add `GUARD claude-hook` as a PreToolUse
//                                                     hook on Bash to Claude Code's settings
//                                                     FILE, keeping every other setting and
//                                                     their order; idempotent
//
// The decision itself (which shell words run which git commands) is GUARD's
// `check-command`, so the hook and the PATH wrapper never disagree.
'use strict';

const fs = require('fs');
const { spawnSync } = require('child_process');

const HOOK_MARK = 'git-readonly claude-hook';

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function hook(guard) {
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, 'utf8'));
  } catch {
    process.stderr.write('git-agent git-readonly hook: cannot read the hook input; not checked\n');
    return 1;
  }
  if (!isObject(input) || input.tool_name !== 'Bash') return 0;
  const command = isObject(input.tool_input) ? input.tool_input.command : undefined;
  if (typeof command !== 'string') return 0;
  const verdict = spawnSync(guard, ['check-command', command], { encoding: 'utf8' });
  if (verdict.status === 0) return 0;
  if (verdict.status !== 1) {
    process.stderr.write(`git-agent git-readonly hook: the guard failed (${verdict.error || verdict.stderr || `exit ${verdict.status}`}); not checked\n`);
    return 1;
  }
  const blocked = [...new Set(verdict.stdout.split('\n')
    .filter((l) => l.startsWith('blocked: '))
    .map((l) => l.slice('blocked: '.length)))];
  process.stderr.write(`git-agent: blocked ${blocked.map((b) => `\`${b}\``).join(', ')}: this task runs with read-only git `
    + '(git agent spawn --git-readonly). Git commands that only read (status, log, diff, '
    + 'show, blame, grep, ls-files, rev-parse, branch/tag listing, config --get, ...) are '
    + 'allowed; commit, add, reset, checkout, switch, restore, stash, merge, rebase, push, '
    + 'fetch and other commands that change the repository are not. Do not try to work '
    + 'around this: leave your changes uncommitted in the working tree, where git-agent '
    + 'collects them for the user to review and commit.\n');
  return 2;
}

function install(guard, file) {
  if (!file) {
    process.stderr.write('usage: git-readonly install-claude FILE\n');
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
      process.stderr.write(`git-agent: ${file} is not a JSON object; the read-only git hook was not added\n`);
      return 1;
    }
  }
  if (settings.hooks === undefined) settings.hooks = {};
  if (!isObject(settings.hooks)) {
    process.stderr.write(`git-agent: ${file}: "hooks" is not an object\n`);
    return 1;
  }
  if (settings.hooks.PreToolUse === undefined) settings.hooks.PreToolUse = [];
  const pre = settings.hooks.PreToolUse;
  if (!Array.isArray(pre)) {
    process.stderr.write(`git-agent: ${file}: "hooks.PreToolUse" is not a list\n`);
    return 1;
  }
  const present = pre.some((m) => isObject(m) && Array.isArray(m.hooks)
    && m.hooks.some((h) => isObject(h) && typeof h.command === 'string' && h.command.includes(HOOK_MARK)));
  if (present) return 0;
  pre.push({ matcher: 'Bash', hooks: [{ type: 'command', command: `${guard} claude-hook` }] });
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

function main(argv) {
  const [guard, mode, ...rest] = argv;
  if (mode === 'hook') return hook(guard);
  if (mode === 'install') return install(guard, rest[0]);
  process.stderr.write('usage: git-readonly-claude.js GUARD (hook | install FILE)\n');
  return 64;
}

process.exitCode = main(process.argv.slice(2));
