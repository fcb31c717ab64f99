import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatCsv, parseCsv } from '../../src/data/csv.js';
import { DataError } from '../../src/data/errors.js';
import { loadImageDataset } from '../../src/data/manifest.js';

function caught(fn: () => unknown): DataError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

async function rejected(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

describe('parseCsv (RFC 4180)', () => {
  it('parses quotes, escaped quotes, commas and line breaks inside quotes, CRLF and a BOM', () => {
    const text = '\uFEFFPath,Note,Age\r\n"a,b.png","say ""hi""",3\r\nc.png,"two\r\nlines",4\r\n"",x,\r\n';
    const t = parseCsv(text, 'm.csv');
    expect(t.header).toEqual(['Path', 'Note', 'Age']);
    expect(t.rows).toEqual([
      ['a,b.png', 'say "hi"', '3'],
      ['c.png', 'two\r\nlines', '4'],
      ['', 'x', ''],
    ]);
    // the third record starts on line 5 because the second spans lines 3-4
    expect(t.lines).toEqual([2, 3, 5]);
  });

  it('accepts LF and lone CR line ends, skips blank lines, needs no final line end', () => {
    expect(parseCsv('a,b\n1,2\n\n3,4').rows).toEqual([['1', '2'], ['3', '4']]);
    expect(parseCsv('a,b\r1,2\r3,4\r').rows).toEqual([['1', '2'], ['3', '4']]);
    const t = parseCsv('a\n\n\nx\n');
    expect(t.rows).toEqual([['x']]);
    expect(t.lines).toEqual([4]);
  });

  it('round-trips formatCsv output', () => {
    const header = ['Path', 'Findings'];
    const rows = [
      ['images/a.png', 'The heart is enlarged. Small left pleural effusion, no pneumothorax.'],
      ['b "quoted".png', 'line\nbreak'],
      [' lead', ''],
    ];
    const text = formatCsv(header, rows);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')[1]).toBe('images/a.png,"The heart is enlarged. Small left pleural effusion, no pneumothorax."');
    expect(parseCsv(text)).toMatchObject({ header, rows });
  });

  it('names the file, line and column of malformed input', () => {
    expect(caught(() => parseCsv('a,b\n1,"open\n2,3\n', 'f.csv')).message).toMatch(/^f\.csv: line 2, column '#2': unterminated quoted field \(the quote opens on line 2\)/);
    expect(caught(() => parseCsv('a,b\n1,x"y\n', 'f.csv')).message).toMatch(/^f\.csv: line 2, column '#2': quote inside an unquoted field/);
    expect(caught(() => parseCsv('a,b\n"x"y,1\n', 'f.csv')).message).toMatch(/^f\.csv: line 2, column '#1': unexpected character 'y' after a closing quote/);
    const e = caught(() => parseCsv('a,b\n1,2\n3\n', 'f.csv'));
    expect(e.message).toBe('f.csv: line 3 (row 2): has 1 fields, expected 2 (a, b)');
    expect([e.file, e.line, e.row]).toEqual(['f.csv', 3, 2]);
    expect(caught(() => parseCsv('a,b,a\n', 'f.csv')).message).toMatch(/duplicate header name 'a' \(columns 1 and 3\)/);
    expect(caught(() => parseCsv('a,,b\n', 'f.csv')).message).toMatch(/header column 2 has an empty name/);
    expect(caught(() => parseCsv('\uFEFF\n\n', 'f.csv')).message).toBe('f.csv: empty CSV file: no header row');
  });
});

describe('loadImageDataset', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'cxf-manifest-'));
    for (const f of ['b/2.png', 'b/10.jpg', 'a/x.JPEG', 'a/deep/y.png', 'top.png', 'notes.txt', 'a/z.gif', 'with, comma.png']) {
      await mkdir(path.dirname(path.join(root, f)), { recursive: true });
      await writeFile(path.join(root, f), 'x');
    }
    await mkdir(path.join(root, 'empty'));
    await symlink(path.join(root, 'b'), path.join(root, 'a', 'loop-to-b'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lists image files recursively, sorted by relative path, ids = relative posix paths', async () => {
    const ds = await loadImageDataset({ root });
    expect(ds.source).toBe(root);
    expect(ds.items.map((i) => i.id)).toEqual([
      'a/deep/y.png',
      'a/loop-to-b/10.jpg',
      'a/loop-to-b/2.png',
      'a/x.JPEG',
      'top.png',
      'with, comma.png',
    ]);
    expect(ds.items[0]?.path).toBe(path.join(root, 'a', 'deep', 'y.png'));
    expect(ds.items[0]?.row).toBeUndefined();
    // the real folder b is reached through the link first and listed once
    expect(ds.items.filter((i) => i.id.endsWith('2.png'))).toHaveLength(1);
  });

  it('filters by the given extensions and fails on an empty dataset', async () => {
    expect((await loadImageDataset({ root, extensions: ['.gif'] })).items.map((i) => i.id)).toEqual(['a/z.gif']);
    const e = await rejected(loadImageDataset({ root: path.join(root, 'empty') }));
    expect(e.message).toMatch(/empty dataset: no image files \(\.png, \.jpg, \.jpeg, \.dcm, \.dicom\) under .*empty/);
    expect((await rejected(loadImageDataset({ root: path.join(root, 'nope') }))).message).toMatch(/dataset root is not a folder \(or does not exist\): .*nope/);
  });

  it('reads a manifest with BOM, CRLF and quoted paths, resolving the path column against the root', async () => {
    await writeFile(path.join(root, 'm.csv'), '\uFEFFImage,Label\r\n"with, comma.png",1\r\nb/2.png,0\r\n./a/../top.png,"x, y"\r\n');
    const ds = await loadImageDataset({ root, manifest: 'm.csv', pathColumn: 'Image' });
    expect(ds.source).toBe(path.join(root, 'm.csv'));
    expect(ds.items.map((i) => i.id)).toEqual(['with, comma.png', 'b/2.png', 'top.png']);
    expect(ds.items.map((i) => i.path)).toEqual([path.join(root, 'with, comma.png'), path.join(root, 'b', '2.png'), path.join(root, 'top.png')]);
    expect(ds.items[2]?.row).toEqual({ Image: './a/../top.png', Label: 'x, y' });
    expect(ds.skippedMissing).toBe(0);
    // absolute manifest path, absolute path cells inside the root get root-relative ids
    await writeFile(path.join(root, 'abs.csv'), `Path\n${path.join(root, 'b', '10.jpg')}\n`);
    const abs = await loadImageDataset({ root: path.join(root, 'a'), manifest: path.join(root, 'abs.csv') });
    expect(abs.items.map((i) => i.id)).toEqual([path.join(root, 'b', '10.jpg').replace(/\\/g, '/')]);
    const inside = await loadImageDataset({ root, manifest: path.join(root, 'abs.csv') });
    expect(inside.items.map((i) => i.id)).toEqual(['b/10.jpg']);
  });

  it('names a missing manifest, a missing path column (listing the columns), an empty path and duplicate rows', async () => {
    expect((await rejected(loadImageDataset({ root, manifest: 'nope.csv' }))).message).toBe(
      `manifest not found: ${path.join(root, 'nope.csv')} (resolved against the root ${root})`,
    );
    await writeFile(path.join(root, 'cols.csv'), 'File,Sex\nb/2.png,F\n');
    expect((await rejected(loadImageDataset({ root, manifest: 'cols.csv' }))).message).toBe(
      `${path.join(root, 'cols.csv')}: no path column 'Path'; the columns are: 'File', 'Sex' (choose one with pathColumn)`,
    );
    await writeFile(path.join(root, 'blank.csv'), 'Path,Sex\nb/2.png,F\n  ,M\n');
    const e = await rejected(loadImageDataset({ root, manifest: 'blank.csv' }));
    expect(e.message).toBe(`${path.join(root, 'blank.csv')}: line 3 (row 2), column 'Path': empty image path`);
    expect([e.line, e.row, e.column]).toEqual([3, 2, 'Path']);
    await writeFile(path.join(root, 'dup.csv'), 'Path\nb/2.png\ntop.png\nb//2.png\n');
    expect((await rejected(loadImageDataset({ root, manifest: 'dup.csv' }))).message).toBe(
      `${path.join(root, 'dup.csv')}: line 4 (row 3), column 'Path': image 'b//2.png' is already listed on row 1`,
    );
    await writeFile(path.join(root, 'header-only.csv'), 'Path\r\n');
    expect((await rejected(loadImageDataset({ root, manifest: 'header-only.csv' }))).message).toMatch(/empty dataset: the manifest has a header but no rows/);
  });

  it('collects every missing file, reports the first few and the count, or skips them with allowMissing', async () => {
    const rows = ['Path', 'gone1.png', 'b/2.png', 'gone2.png', 'gone3.png', 'gone4.png', 'top.png'];
    await writeFile(path.join(root, 'missing.csv'), `${rows.join('\n')}\n`);
    const e = await rejected(loadImageDataset({ root, manifest: 'missing.csv' }));
    expect(e.message).toContain("4 of 6 image file(s) in column 'Path' do not exist");
    expect(e.message).toContain(`line 2 (row 1): gone1.png -> ${path.join(root, 'gone1.png')}`);
    expect(e.message).toContain('line 4 (row 3): gone2.png');
    expect(e.message).toContain('line 5 (row 4): gone3.png');
    expect(e.message).not.toContain('gone4.png');
    expect(e.message).toContain('pass allowMissing to skip them');
    const ds = await loadImageDataset({ root, manifest: 'missing.csv', allowMissing: true });
    expect(ds.items.map((i) => i.id)).toEqual(['b/2.png', 'top.png']);
    expect(ds.skippedMissing).toBe(4);
    await writeFile(path.join(root, 'all-missing.csv'), 'Path\ngone.png\n');
    expect((await rejected(loadImageDataset({ root, manifest: 'all-missing.csv', allowMissing: true }))).message).toMatch(/none of the 1 listed image files exist/);
  });
});
