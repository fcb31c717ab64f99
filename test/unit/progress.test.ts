/** The progress line of long commands (src/cli/commands/common.ts `progress`), with an injected clock and stream. */
import { describe, expect, it } from 'vitest';
import { formatCounted, progress, type ProgressOptions } from '../../src/cli/commands/common.js';

function sink(tty: boolean, extra: ProgressOptions = {}) {
  const writes: string[] = [];
  let t = 0;
  const p = (quiet = false) =>
    progress({ quiet, tty, stream: { write: (s: string) => writes.push(s) }, now: () => t, ...extra });
  return { writes, p, at: (ms: number) => (t = ms) };
}

describe('formatCounted', () => {
  it('shows done/total, percent, elapsed and ETA = elapsed / done * (total - done)', () => {
    expect(formatCounted('synth: images', 100, 500, 20)).toBe('synth: images 100/500 (20 %), 20s elapsed, ETA 1m20s');
    expect(formatCounted('x', 0, 10, 3)).toBe('x 0/10 (0 %), 3s elapsed, ETA ?');
    expect(formatCounted('x', 10, 10, 3)).toBe('x 10/10 (100 %), 3s elapsed, ETA 0s');
    // Counted from a later start (done0 = 40): 10 items in 5 s, 50 left.
    expect(formatCounted('x', 50, 100, 5, 10)).toBe('x 50/100 (50 %), 5s elapsed, ETA 25s');
    expect(formatCounted('x', 3600 * 2, 3600 * 4, 3600 * 2)).toBe('x 7200/14400 (50 %), 2h00m elapsed, ETA 2h00m');
  });
});

describe('progress on a terminal', () => {
  it('rewrites one line in place, at most every 100 ms, always the last one, and ends it with done()', () => {
    const { writes, p, at } = sink(true);
    const bar = p();
    bar.update('work', 0, 100); // t 0: starts the clock, written
    at(50);
    bar.update('work', 1, 100); // too soon
    at(120);
    bar.update('work', 2, 100);
    at(130);
    bar.update('work', 100, 100); // the last: always
    bar.done('work: done');
    expect(writes).toEqual([
      '\r\x1b[2Kwork 0/100 (0 %), 0s elapsed, ETA ?',
      '\r\x1b[2Kwork 2/100 (2 %), 0s elapsed, ETA 5s', // 0.12 s / 2 * 98 = 5.9 s
      '\r\x1b[2Kwork 100/100 (100 %), 0s elapsed, ETA 0s',
      '\r\x1b[2Kwork: done\n',
    ]);
  });

  it('a key keeps one counted task (and its ETA) while the message changes, as segmentation training steps do', () => {
    const { writes, p, at } = sink(true);
    const bar = p();
    bar.update('loss 0.9, step', 10, 110, 'train'); // resumed at step 10: the clock starts here
    at(1000);
    bar.update('loss 0.8, step', 20, 110, 'train'); // 10 steps in 1 s, 90 left
    at(2000);
    bar.update('loss 0.7, step', 30, 110); // no key: the message is the task, a new one starts
    expect(writes).toEqual([
      '\r\x1b[2Kloss 0.9, step 10/110 (9 %), 0s elapsed, ETA ?',
      '\r\x1b[2Kloss 0.8, step 20/110 (18 %), 1s elapsed, ETA 9s',
      '\r\x1b[2Kloss 0.7, step 30/110 (27 %), 0s elapsed, ETA ?',
    ]);
  });

  it('uncounted messages are throttled the same way', () => {
    const { writes, p, at } = sink(true);
    const bar = p();
    bar.update('a');
    at(10);
    bar.update('b');
    at(200);
    bar.update('c');
    expect(writes).toEqual(['\r\x1b[2Ka', '\r\x1b[2Kc']);
  });
});

describe('progress without a terminal', () => {
  it('prints a plain line per 10 % or every 10 s, nothing before the first item', () => {
    const { writes, p, at } = sink(false);
    const bar = p();
    bar.update('work', 0, 1000); // unknown ETA: nothing
    for (let k = 1; k <= 1000; k++) {
      at(k * 20); // 20 ms per item: 20 s in all, 2 s per 10 %: the 10 % lines
      bar.update('work', k, 1000);
    }
    bar.done('work: done');
    expect(writes).toHaveLength(12); // 1 (first item) + 10 (each 10 %) + done
    expect(writes[0]).toBe('work 1/1000 (0 %), 0s elapsed, ETA 19s\n');
    expect(writes[1]).toBe('work 100/1000 (10 %), 2s elapsed, ETA 18s\n');
    expect(writes.every((w) => w.endsWith('\n') && !w.includes('\r'))).toBe(true);
    expect(writes.at(-1)).toBe('work: done\n');
  });

  it('a quick task prints its first item and at most a line a second', () => {
    const { writes, p, at } = sink(false);
    const bar = p();
    bar.update('quick', 0, 100);
    for (let k = 1; k <= 100; k++) {
      at(k * 15); // 1.5 s in all
      bar.update('quick', k, 100);
    }
    expect(writes.map((w) => w.split(' ')[1])).toEqual(['1/100', '68/100']); // at 15 ms, then the first item >= 1 s later (1020 ms)
  });

  it('a slow task prints every 10 s between the 10 % marks', () => {
    const { writes, p, at } = sink(false);
    const bar = p();
    bar.update('slow', 0, 1000);
    for (let k = 1; k <= 50; k++) {
      at(k * 1000); // 1 s per item: 50 s, under 10 %
      bar.update('slow', k, 1000);
    }
    // 1 s (the first item), then 11, 21, 31, 41 s.
    expect(writes.map((w) => w.split(' ')[1])).toEqual(['1/1000', '11/1000', '21/1000', '31/1000', '41/1000']);
    expect(writes[1]).toBe('slow 11/1000 (1 %), 11s elapsed, ETA 16m29s\n');
  });

  it('a new message or a smaller count starts a new task with its own clock', () => {
    const { writes, p, at } = sink(false);
    const bar = p();
    bar.update('loading train', 0, 10);
    at(1000);
    bar.update('loading train', 10, 10);
    at(2000);
    bar.update('loading valid', 0, 4);
    at(3000);
    bar.update('loading valid', 2, 4);
    expect(writes).toEqual(['loading train 10/10 (100 %), 1s elapsed, ETA 0s\n', 'loading valid 2/4 (50 %), 1s elapsed, ETA 1s\n']);
  });
});

describe('train’s settings (lineIntervalMs 2000, finalLine)', () => {
  it('without a terminal: a line every 2 s, and the last item even right after another line', () => {
    const { writes, p, at } = sink(false, { lineIntervalMs: 2000, finalLine: true });
    const bar = p();
    bar.update('train: iteration', 0, 1000, 'train'); // the start event: the clock starts, nothing printed
    for (let k = 1; k <= 10; k++) {
      at(k * 500); // 0.5 s per iteration, far from a 10 % mark: the 2 s lines
      bar.update(`train: loss ${(1 / k).toFixed(4)}, iteration`, k, 1000, 'train');
    }
    at(5300);
    bar.update('train: loss 0.0010, iteration', 1000, 1000, 'train'); // 0.8 s after the line of iteration 9
    expect(writes).toEqual([
      'train: loss 1.0000, iteration 1/1000 (0 %), 0s elapsed, ETA 8m19s\n',
      'train: loss 0.2000, iteration 5/1000 (0 %), 2s elapsed, ETA 8m17s\n',
      'train: loss 0.1111, iteration 9/1000 (0 %), 4s elapsed, ETA 8m15s\n',
      'train: loss 0.0010, iteration 1000/1000 (100 %), 5s elapsed, ETA 0s\n',
    ]);
  });

  it('a resumed run counts its ETA from the start event, not from iteration 0', () => {
    const { writes, p, at } = sink(false, { lineIntervalMs: 2000, finalLine: true });
    const bar = p();
    bar.update('train: iteration', 150, 200, 'train'); // resumed at iteration 150
    at(3000);
    bar.update('train: loss 0.5000, iteration', 151, 200, 'train'); // 3 s per iteration, 49 left
    expect(writes).toEqual(['train: loss 0.5000, iteration 151/200 (75 %), 3s elapsed, ETA 2m27s\n']);
  });

  it('finalLine off: the last item within a second of the previous line is left out (as before)', () => {
    for (const finalLine of [false, true]) {
      const { writes, p, at } = sink(false, { finalLine });
      const bar = p();
      bar.update('quick', 0, 100);
      for (let k = 1; k <= 100; k++) {
        at(k * 15);
        bar.update('quick', k, 100);
      }
      expect(writes.map((w) => w.split(' ')[1])).toEqual(finalLine ? ['1/100', '68/100', '100/100'] : ['1/100', '68/100']);
    }
  });

  it('on a terminal the start event shows the line at once, and every step rewrites it', () => {
    const { writes, p, at } = sink(true, { lineIntervalMs: 2000, finalLine: true });
    const bar = p();
    bar.update('train: iteration', 0, 2, 'train');
    at(500);
    bar.update('train: loss 1.0000, iteration', 1, 2, 'train');
    bar.done('checkpoint: ckpt-0000000.safetensors');
    at(1000);
    bar.update('train: loss 0.9000, iteration', 2, 2, 'train');
    expect(writes).toEqual([
      '\r\x1b[2Ktrain: iteration 0/2 (0 %), 0s elapsed, ETA ?',
      '\r\x1b[2Ktrain: loss 1.0000, iteration 1/2 (50 %), 0s elapsed, ETA 0s',
      '\r\x1b[2Kcheckpoint: ckpt-0000000.safetensors\n',
      '\r\x1b[2Ktrain: loss 0.9000, iteration 2/2 (100 %), 1s elapsed, ETA 0s',
    ]);
  });
});

describe('-q', () => {
  it('silences every update and done()', () => {
    for (const tty of [true, false]) {
      const { writes, p, at } = sink(tty);
      const bar = p(true);
      bar.update('x');
      bar.update('work', 0, 10);
      at(20_000);
      bar.update('work', 5, 10);
      bar.done('finished');
      expect(writes).toEqual([]);
    }
  });

  it('progress(true) is the quiet form the commands pass', () => {
    const writes: string[] = [];
    const bar = progress({ quiet: true, stream: { write: (s: string) => writes.push(s) } });
    bar.done('x');
    expect(writes).toEqual([]);
  });
});

describe('library progress hooks', () => {
  it('bootstrapMultiLabel reports each resample, through its option or the hook the CLI sets', async () => {
    const { bootstrapMultiLabel, setBootstrapProgress } = await import('../../src/eval/bootstrap.js');
    const data = { numClasses: 1, scores: [0.1, 0.4, 0.35, 0.8], labels: [0, 0, 1, 1] };
    const seen: number[] = [];
    bootstrapMultiLabel(data, { n: 5, onProgress: (d, t) => seen.push(d * 10 + t) });
    expect(seen).toEqual([5, 15, 25, 35, 45, 55]);
    const hooked: number[] = [];
    const was = setBootstrapProgress((d) => hooked.push(d));
    try {
      const a = bootstrapMultiLabel(data, { n: 3, seed: 1 });
      expect(hooked).toEqual([0, 1, 2, 3]);
      // The hook only watches: the result is the one without it.
      setBootstrapProgress(undefined);
      expect(bootstrapMultiLabel(data, { n: 3, seed: 1 })).toEqual(a);
    } finally {
      setBootstrapProgress(was);
    }
  });
});
