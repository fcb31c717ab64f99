import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCsv } from '../../src/data/csv.js';
import { DataError } from '../../src/data/errors.js';
import { findFile, readTable, requireColumns, scanTable } from '../../src/datasets/table.js';
import { rejected } from './datasets-helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-table-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Quoted fields with commas, doubled quotes and line breaks (LF and CRLF), blank lines, no final line end.
const TRICKY =
  'id,text,n\r\n' +
  'a,"one, two",1\r\n' +
  'b,"say ""hi""\nand bye",2\n' +
  '\n' +
  'c,"x\r\ny\r\nz",3\n' +
  'd,,4\n' +
  'e,"",5';

describe('scanTable', () => {
  it('gives the same rows and physical lines as parseCsv, whatever the chunk size', async () => {
    const file = path.join(dir, 'tricky.csv');
    await writeFile(file, TRICKY);
    const ref = parseCsv(TRICKY, file);
    // hand-checked: 'b' spans lines 3-4, line 5 is blank, 'c' spans lines 6-8
    expect(ref.lines).toEqual([2, 3, 6, 9, 10]);
    for (const chunkChars of [1, 2, 3, 5, 8, 13, 1000]) {
      const t = await readTable(file, { chunkChars });
      expect(t.header).toEqual(['id', 'text', 'n']);
      expect(t.rows).toEqual(ref.rows);
      expect(t.lines).toEqual(ref.lines);
    }
  });

  it('reads gzip-compressed files by the .gz extension', async () => {
    const file = path.join(dir, 'tricky.csv.gz');
    await writeFile(file, gzipSync(Buffer.from(TRICKY)));
    const t = await readTable(file, { chunkChars: 4 });
    expect(t.rows.map((r) => r[0])).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(t.rows[1]).toEqual(['b', 'say "hi"\nand bye', '2']);
  });

  it('names pandas-style empty header names Unnamed: k (index column, trailing comma)', async () => {
    const file = path.join(dir, 'unnamed.csv');
    await writeFile(file, ',a,b,\n0,x,y,\n1,z,w,\n');
    const t = await readTable(file);
    expect(t.header).toEqual(['Unnamed: 0', 'a', 'b', 'Unnamed: 3']);
    expect(t.rows).toEqual([
      ['0', 'x', 'y', ''],
      ['1', 'z', 'w', ''],
    ]);
  });

  it('drops a UTF-8 byte order mark and skips blank lines before the header', async () => {
    const file = path.join(dir, 'bom.csv');
    await writeFile(file, '\uFEFF\n\nk,v\n1,2\n');
    const t = await readTable(file);
    expect(t.header).toEqual(['k', 'v']);
    expect(t.rows).toEqual([['1', '2']]);
    expect(t.lines).toEqual([4]);
  });

  it('reports the physical line and data row of a malformed row, across chunks', async () => {
    const lines = ['a,b'];
    for (let i = 1; i <= 60; i++) lines.push(i === 41 ? '41,2,extra' : `${i},"q\nq"`);
    const file = path.join(dir, 'bad.csv');
    await writeFile(file, `${lines.join('\n')}\n`);
    for (const chunkChars of [7, 100, 1 << 20]) {
      const e = await rejected(readTable(file, { chunkChars }));
      // rows 1..40 take two physical lines each after the header: row 41 starts on line 1 + 40·2 + 1 = 82
      expect(e.line).toBe(82);
      expect(e.row).toBe(41);
      expect(e.message).toBe(`${file}: line 82 (row 41): has 3 fields, expected 2 (a, b)`);
    }
  });

  it('calls onHeader before any row and lets its errors through', async () => {
    const file = path.join(dir, 'cols.csv');
    await writeFile(file, 'x,y\n1,2\n');
    const seen: string[] = [];
    await scanTable(
      file,
      (h) => seen.push(`header ${h.header.join('|')}`),
      (cells, line, row) => seen.push(`${row}@${line}:${cells.join('|')}`),
    );
    expect(seen).toEqual(['header x|y', '1@2:1|2']);
    const e = await rejected(scanTable(file, (h) => requireColumns(h, ['Path', 'y', 'Sex'], 'a test file'), () => {}));
    expect(e.message).toBe(`${file}: line 1: missing columns 'Path', 'Sex' (expected in a test file); the columns found are: 'x', 'y'`);
  });

  it('rejects a missing file, an empty file and a .gz that is not gzip', async () => {
    expect((await rejected(readTable(path.join(dir, 'nope.csv')))).message).toBe(`${path.join(dir, 'nope.csv')}: file not found`);
    const empty = path.join(dir, 'empty.csv');
    await writeFile(empty, '\n\n');
    expect((await rejected(readTable(empty))).message).toMatch(/empty CSV file: no header row/);
    const fake = path.join(dir, 'fake.csv.gz');
    await writeFile(fake, 'a,b\n1,2\n');
    expect((await rejected(readTable(fake))).message).toMatch(/cannot decompress .*gzip/);
  });
});

describe('findFile', () => {
  it('finds a candidate as named, with .gz added, or with .gz removed, and lists what it tried', async () => {
    await writeFile(path.join(dir, 'plain.csv'), 'a\n');
    await writeFile(path.join(dir, 'packed.csv.gz'), gzipSync(Buffer.from('a\n')));
    expect(await findFile(dir, ['plain.csv.gz'], 'plain', true)).toBe(path.join(dir, 'plain.csv'));
    expect(await findFile(dir, ['packed.csv'], 'packed', true)).toBe(path.join(dir, 'packed.csv.gz'));
    expect(await findFile(dir, ['missing.csv'], 'x', false)).toBeUndefined();
    const e = await rejected(findFile(dir, ['m1.csv', 'sub/m2.csv.gz'], 'the thing', true));
    expect(e.message).toBe(`the thing not found under ${dir} (looked for 'm1.csv', 'm1.csv.gz', 'sub/m2.csv.gz', 'sub/m2.csv')`);
  });
});
