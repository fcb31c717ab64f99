/** Command lines of README code blocks and `--help` examples, read as a shell would (for the CLI tests). */

/** Lines ending in ` \` joined with the next. */
export function joinContinuations(lines: string[]): string[] {
  const out: string[] = [];
  let cur = '';
  for (const l of lines) {
    if (l.endsWith('\\')) cur += `${l.slice(0, -1).trimEnd()} `;
    else {
      out.push(cur + l);
      cur = '';
    }
  }
  return out;
}

/** Shell words of a command line: spaces split, "…" and '…' quote, a word-initial # starts a comment. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '"' || c === "'") {
      const end = line.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unterminated quote in: ${line}`);
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (/\s/.test(c)) {
      if (cur !== null) words.push(cur);
      cur = null;
    } else if (c === '#' && cur === null) break;
    else cur = (cur ?? '') + c;
  }
  if (cur !== null) words.push(cur);
  return words;
}

/** Every `npx cxformer …` line of the README's code blocks, in order, continuation lines joined. */
export function readmeCommands(readme: string): string[] {
  const blocks = [...readme.matchAll(/```(?:sh|bash|console)?\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.flatMap((b) => joinContinuations(b.split('\n').map((l) => l.trim()))).filter((l) => l.startsWith('npx cxformer '));
}
