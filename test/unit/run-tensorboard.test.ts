import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { crc32c, EventFile, maskCrc, metricScalars, metricTag, tfRecord } from '../../src/run/tensorboard.js';
import { crc32cBitwise, decodeEvent, eventFiles, readEventFile, readRecords, readRun } from './tfevents-reader.js';

const ascii = (s: string) => new TextEncoder().encode(s);
const f32 = (v: number) => Math.fround(v);

describe('crc32c', () => {
  it('matches the published check values (CRC catalogue, RFC 3720 B.4)', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // 32 zero bytes
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43); // 32 0xff bytes
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e); // 0, 1, …, 31
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c); // 31, 30, …, 0
  });

  it('agrees with the test reader’s bitwise implementation and continues a running CRC', () => {
    const b = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
    for (const n of [1, 7, 8, 9, 64, 300]) expect(crc32c(b.subarray(0, n))).toBe(crc32cBitwise(b.subarray(0, n)));
    expect(crc32c(b.subarray(100), crc32c(b.subarray(0, 100)))).toBe(crc32c(b));
  });

  it('masks as TFRecord does', () => {
    // ((crc >>> 15) | (crc << 17)) + 0xa282ead8 mod 2^32, worked by hand for two values.
    expect(maskCrc(0)).toBe(0xa282ead8);
    expect(maskCrc(0x8000)).toBe((1 + 0xa282ead8) >>> 0);
    expect(maskCrc(0xffffffff)).toBe((0xffffffff + 0xa282ead8) % 2 ** 32);
  });
});

describe('TFRecord framing', () => {
  it('frames bytes so that the strict reader accepts them, and refuses a flipped bit', () => {
    const a = tfRecord(ascii('hello'));
    const b = tfRecord(new Uint8Array(0));
    const both = new Uint8Array([...a, ...b]);
    const r = readRecords(both);
    expect(r.tornBytes).toBe(0);
    expect(r.records.map((x) => new TextDecoder().decode(x))).toEqual(['hello', '']);
    for (const at of [3, 9, 13, a.length - 1]) {
      const bad = both.slice();
      bad[at]! ^= 0x10;
      expect(() => readRecords(bad), `bit flipped at ${at}`).toThrow(/CRC/);
    }
  });
});

describe('metric tags', () => {
  it('groups the fields of every trainer', () => {
    expect(metricTag('total_loss')).toBe('train/total_loss');
    expect(metricTag('dino_local_crops_loss')).toBe('train/dino_local_crops_loss');
    expect(metricTag('lr')).toBe('schedule/lr');
    expect(metricTag('teacherTemp')).toBe('schedule/teacherTemp');
    expect(metricTag('grad_norm_backbone')).toBe('grad/grad_norm_backbone');
    expect(metricTag('gradNorm')).toBe('grad/gradNorm');
    expect(metricTag('ms_teacher')).toBe('time/ms_teacher');
    expect(metricTag('images_per_s')).toBe('time/images_per_s');
    expect(metricTag('imagesPerS')).toBe('time/imagesPerS');
    expect(metricTag('probe_knn_macro_auroc')).toBe('probe/probe_knn_macro_auroc');
    expect(metricTag('val_macro_auroc')).toBe('val/val_macro_auroc');
    expect(metricTag('valDice/lungs')).toBe('val/valDice/lungs');
    expect(metricTag('best_epoch')).toBe('progress/best_epoch');
  });

  it('keeps what metrics.jsonl holds as numbers: flattens objects, drops strings, booleans, nulls, NaN, ±∞ and skipped keys', () => {
    const m = metricScalars({ kind: 'epoch', step: 4, loss: 0.5, ce: NaN, gradNorm: Infinity, ok: true, val_loss: null, valDice: { lungs: 0.5, heart: 0.25 } }, ['step']);
    expect([...m.keys()].sort()).toEqual(['train/loss', 'val/valDice/heart', 'val/valDice/lungs']);
  });
});

describe('EventFile', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'cxf-tb-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    delete process.env.CXFORMER_TENSORBOARD;
  });

  it('writes file_version, a START, the config text and scalars that read back exactly (float32)', () => {
    const dir = tmp();
    const ev = EventFile.create(dir, { config: 'a: 1\nb:\n  c: [2, 3]\n', now: () => 1_700_000_000_500 })!;
    expect(path.basename(ev.file)).toMatch(/^events\.out\.tfevents\.1700000000\.[A-Za-z0-9._-]+\.\d+\.0$/);
    ev.metrics(0, { iteration: 0, total_loss: 10.123456789, lr: 1e-3, ms_teacher: 12.5 }, ['iteration']);
    ev.metrics(5, { iteration: 5, total_loss: 9.5, lr: 2e-3, ms_teacher: 11 }, ['iteration']);
    ev.scalars(6, new Map());
    const { events, tornBytes } = readEventFile(ev.file);
    expect(tornBytes).toBe(0);
    expect(events[0]).toMatchObject({ fileVersion: 'brain.Event:2', step: 0, wallTime: 1_700_000_000.5 });
    expect(events[1]).toMatchObject({ sessionStatus: 1, step: 0 });
    const text = events[2]!.values![0]!;
    expect(text).toMatchObject({ tag: 'config', pluginName: 'text', tensor: { dtype: 7, rank: 0, strings: ['    a: 1\n    b:\n      c: [2, 3]'] } });
    expect(events).toHaveLength(5);
    const run = readRun(dir);
    expect(run.scalars.get('train/total_loss')).toEqual([
      [0, f32(10.123456789)],
      [5, 9.5],
    ]);
    expect(run.scalars.get('schedule/lr')).toEqual([
      [0, f32(1e-3)],
      [5, f32(2e-3)],
    ]);
    expect(run.scalars.get('time/ms_teacher')).toEqual([
      [0, 12.5],
      [5, 11],
    ]);
    expect(run.texts.get('config')).toHaveLength(1);
  });

  it('keeps every complete record of a file cut anywhere (a kill mid-append)', () => {
    const dir = tmp();
    const ev = EventFile.create(dir, { now: () => 1_700_000_000_000 })!;
    for (let s = 0; s < 6; s++) ev.metrics(s, { loss: s / 3, lr: s * 1e-4 });
    const full = new Uint8Array(readFileSync(ev.file));
    const all = readRecords(full).records;
    // Record boundaries: every cut between two boundaries keeps the records before it.
    const ends: number[] = [];
    let at = 0;
    for (const r of all) ends.push((at += 16 + r.length));
    for (let cut = 0; cut <= full.length; cut++) {
      const r = readRecords(full.subarray(0, cut));
      const complete = ends.filter((e) => e <= cut).length;
      expect(r.records, `cut at ${cut}`).toHaveLength(complete);
      expect(r.tornBytes).toBe(cut - (ends[complete - 1] ?? 0));
    }
    // The same with the file itself, truncated in the middle of the last record: the earlier steps read back.
    truncateSync(ev.file, full.length - 5);
    const { events, tornBytes } = readEventFile(ev.file);
    expect(tornBytes).toBe(all.at(-1)!.length + 16 - 5);
    expect(events.map((e) => e.step)).toEqual([0, 0, 0, 1, 2, 3, 4]);
    expect(decodeEvent(all.at(-1)!).step).toBe(5);
  });

  it('starts a new file on every start, named to sort after the old ones; START supersedes later steps', () => {
    const dir = tmp();
    const now = () => 1_700_000_000_000;
    const a = EventFile.create(dir, { now })!;
    for (let s = 0; s < 5; s++) a.metrics(s, { loss: s });
    // A resume from step 2 in the same second: a new file, one second later, the old one untouched.
    const before = readFileSync(a.file);
    const b = EventFile.create(dir, { now, firstStep: 3 })!;
    b.metrics(3, { loss: 30 });
    b.metrics(4, { loss: 40 });
    expect(readFileSync(a.file).equals(before)).toBe(true);
    expect(eventFiles(dir)).toEqual([a.file, b.file]);
    expect(path.basename(b.file)).toMatch(/^events\.out\.tfevents\.1700000001\./);
    expect(readRun(dir).scalars.get('train/loss')).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 30],
      [4, 40],
    ]);
  });

  it('is off with CXFORMER_TENSORBOARD=0', () => {
    const dir = tmp();
    process.env.CXFORMER_TENSORBOARD = '0';
    expect(EventFile.create(dir)).toBeNull();
    expect(readdirSync(dir)).toEqual([]);
  });
});
