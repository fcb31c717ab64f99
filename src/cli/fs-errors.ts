/**
 * File-system errors as the user's to fix: an output folder that cannot be created or written (permissions, a
 * read-only file system, a file where a folder should be, a missing parent folder, a full disk) becomes one line
 * naming the path and the cause, and exit status 2 (src/cli/main.ts), instead of Node's raw
 * "ENOENT: no such file or directory, mkdir …".
 *
 * Node's recursive mkdir reports ENOENT when a parent cannot be created on a read-only file system (it stats the
 * path after the failure and returns that error), so an ENOENT from mkdir is diagnosed again here: from the
 * nearest folder that exists, is it a folder, and can this process write in it?
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

/** Codes reported as the user's problem. */
const CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'ENOENT', 'EISDIR', 'ENOSPC', 'EDQUOT', 'EEXIST']);

/** Why a folder cannot be written in: an errno code, or undefined when it can. */
export type WriteProbe = (dir: string) => string | undefined;

/** access(2) with W_OK: EACCES for permissions (not for root), EROFS for a read-only file system. */
const probeWritable: WriteProbe = (dir) => {
  try {
    accessSync(dir, constants.W_OK);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'EACCES';
  }
};

/** The nearest existing path at or above `p` (the root at worst), and whether it is a folder. */
function nearestExisting(p: string): { at: string; isDir: boolean } {
  let at = path.resolve(p);
  for (;;) {
    try {
      return { at, isDir: statSync(at).isDirectory() };
    } catch {
      const up = path.dirname(at);
      if (up === at) return { at, isDir: true };
      at = up;
    }
  }
}

/** A cause in words for an errno code. */
function cause(code: string, at: string): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${at})`;
    case 'EROFS':
      return `read-only file system (${at})`;
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'disk quota exceeded';
    default:
      return code;
  }
}

/**
 * One line for a Node file-system error (`code`, `syscall`, `path`), or undefined when `e` is not one of the
 * user-facing kinds (see CODES).
 *
 * @param probe how writability of an existing folder is tested (tests inject one; the default is access(2))
 */
export function describeFsError(e: unknown, probe: WriteProbe = probeWritable): string | undefined {
  const err = e as NodeJS.ErrnoException | undefined;
  if (!(err instanceof Error) || typeof err.code !== 'string' || typeof err.syscall !== 'string' || typeof err.path !== 'string') {
    const inner = (e as { cause?: unknown } | undefined)?.cause;
    return inner !== undefined && inner !== e ? describeFsError(inner, probe) : undefined;
  }
  if (!CODES.has(err.code)) return undefined;
  // Temporary files (atomic writes) are named after the file they become.
  const file = err.path.replace(/\.tmp-[\w.-]+$/, '');
  const code = err.code;
  const mkdir = err.syscall === 'mkdir';
  // open(2) of a file that does not exist can only have been meant to create it.
  const creating = mkdir || (err.syscall === 'open' && !exists(file));
  const verb = mkdir ? 'cannot create folder' : creating ? 'cannot create' : `cannot ${err.syscall === 'open' ? 'open' : err.syscall}`;

  if (code === 'EEXIST') return `${verb} ${file}: a file of that name is in the way`;
  if (code === 'EISDIR') return `${verb} ${file}: it is a folder, not a file`;
  if (code === 'ENOTDIR' || code === 'ENOENT') {
    const parent = path.dirname(path.resolve(file));
    const near = nearestExisting(mkdir ? file : parent);
    if (!near.isDir) return `${verb} ${file}: ${near.at} is a file, not a folder`;
    if (!mkdir) return near.at === parent ? `${verb} ${file}: no such file` : `${verb} ${file}: folder ${parent} does not exist`;
    // mkdir: a parent that could not be created; ask the nearest existing folder why.
    const why = probe(near.at);
    if (why !== undefined) return `${verb} ${file}: ${cause(why, near.at)}`;
    return `${verb} ${file}: ${err.message}`;
  }
  // EACCES / EPERM / EROFS / ENOSPC / EDQUOT: when a new entry could not be made, the folder is the one to fix.
  return `${verb} ${file}: ${cause(code, creating ? path.dirname(path.resolve(file)) : file)}`;
}

function exists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
