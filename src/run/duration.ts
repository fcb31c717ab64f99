/** Durations as the CLI's progress lines and the run report page print them (no dependencies). */

/** An ETA, elapsed time or stage duration: 1h05m, 4m07s, 12s; '?' when unknown. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  return m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
