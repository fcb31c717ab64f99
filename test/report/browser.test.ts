/**
 * The run report page in a real browser: Debian's Chromium, headless (scripts/setup.sh installs it). The page of
 * hand-made run folders must render with every section (the page's inline script marks `<body data-rendered>` with
 * the section ids it found once the DOM is built), show its SVG charts and plots, and a screenshot must come out
 * (kept as <OS temp folder>/cxformer-report-screenshot.png, its path printed; not committed). A missing Chromium fails this test: run scripts/setup.sh.
 *
 * Flags: --headless --no-sandbox (root in CI containers) --disable-gpu; --dump-dom prints the DOM after scripts ran
 * (https://developer.chrome.com/docs/chromium/headless).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECTION_IDS, writeRunReport } from '../../src/report/index.js';
import * as fx from './fixtures.js';

/** The Chromium binary: $CHROMIUM, else Debian's chromium on PATH. */
function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM, 'chromium', 'chromium-browser'].filter((c): c is string => !!c);
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  return null;
}

const chromium = findChromium();
let root: string;
let profile: string;

function browse(args: string[]) {
  // A profile folder of our own: no state shared with a user's browser, removed afterwards.
  const r = spawnSync(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${profile}`, ...args], { encoding: 'utf8', timeout: 90_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  root = await fx.tempDir('cxf-report-browser-');
  profile = path.join(root, 'chromium-profile');
  await mkdir(profile);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the report page in headless Chromium', () => {
  it('Chromium is installed (scripts/setup.sh installs Debian\'s chromium)', () => {
    expect(chromium, 'chromium not found on PATH (nor $CHROMIUM): run scripts/setup.sh, which installs Debian\'s chromium package').not.toBeNull();
  });

  const kinds = [
    ['pretraining', fx.pretrainRun],
    ['full fine-tuning', fx.fullFinetuneRun],
    ['segmentation', fx.segmentationRun],
    ['evaluation', fx.evaluationFolder],
  ] as const;

  it.each(kinds)('%s: renders with every section, its charts and plots', async (kind, make) => {
    expect(chromium, 'chromium not found: run scripts/setup.sh').not.toBeNull();
    const dir = await make(path.join(root, kind.replace(/ /g, '-')));
    const { file } = await writeRunReport(dir);
    const r = browse(['--dump-dom', pathToFileURL(file).href]);
    expect(r.code, r.stderr).toBe(0);
    const dom = r.stdout;
    // the inline script ran (the CSP lets it run by its hash) and found every section
    const body = /<body([^>]*)>/.exec(dom)?.[1] ?? '';
    expect(body).toContain('data-rendered="true"');
    expect(/data-sections="([^"]*)"/.exec(body)?.[1]).toBe(SECTION_IDS.join(' '));
    for (const id of SECTION_IDS) expect(dom).toContain(`<section id="${id}">`);
    const svgs = Number(/data-svgs="(\d+)"/.exec(body)?.[1]);
    const charts = (dom.match(/<svg class="chart"/g) ?? []).length;
    if (kind === 'evaluation') expect(charts).toBe(0);
    else expect(charts).toBeGreaterThanOrEqual(kind === 'pretraining' ? 10 : 4);
    // every SVG in the DOM was counted by the script: charts plus inlined plots
    expect(svgs).toBe((dom.match(/<svg[\s>]/g) ?? []).length);
    if (kind !== 'pretraining') expect(dom).toMatch(/<figure class="plot" id="plot-/);
  });

  it('a screenshot of the pretraining page comes out as a 1280 × 4000 PNG', async () => {
    expect(chromium, 'chromium not found: run scripts/setup.sh').not.toBeNull();
    const dir = await fx.pretrainRun(path.join(root, 'shot'));
    const { file } = await writeRunReport(dir);
    // Kept after the test (outside the removed temp folder) for a look: its path is printed.
    const png = path.join(tmpdir(), 'cxformer-report-screenshot.png');
    const r = browse([`--screenshot=${png}`, '--window-size=1280,4000', '--hide-scrollbars', pathToFileURL(file).href]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(png), r.stderr).toBe(true);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1280, 4000]);
    expect((await stat(png)).size).toBeGreaterThan(20_000);
    // not a blank page: the image has more than one colour
    const { channels } = await sharp(png).stats();
    expect(channels.some((c) => c.max - c.min > 100)).toBe(true);
    process.stdout.write(`report page screenshot: ${png}\n`);
  });
});
