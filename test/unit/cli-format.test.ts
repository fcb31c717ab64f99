/** Progress-line helpers of the CLI (no native addon). */
import { describe, expect, it } from 'vitest';
import { formatDuration } from '../../src/cli/commands/common.js';

describe('formatDuration', () => {
  it('prints seconds, minutes and hours the way the progress lines show them', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(12.7)).toBe('12s');
    expect(formatDuration(247)).toBe('4m07s');
    expect(formatDuration(3600 + 5 * 60 + 59)).toBe('1h05m');
    expect(formatDuration(NaN)).toBe('?');
    expect(formatDuration(Infinity)).toBe('?');
    expect(formatDuration(-1)).toBe('?');
  });
});
