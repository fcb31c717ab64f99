/**
 * The images of a pretraining run and how a rank reads them: one of three sources (a prepared cache, public
 * datasets mixed by weight, or an image folder / CSV manifest, the built-in phantoms included), then batches of
 * the rank's shard in sampler order, decoded ahead of the step, with unreadable images replaced deterministically.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { openCache } from '../cache/reader.js';
import type { PretrainConfig } from '../config/pretrain.js';
import { loadImageDataset, type DatasetItem } from '../data/manifest.js';
import { loadDataset, mixDatasets, planRecords, type CxrRecord, type DatasetSpec } from '../datasets/index.js';
import { ConfigError } from '../model/config.js';
import { CxformerError } from '../native/load.js';
import { limiter } from '../run/batches.js';
import { loadCachedImage, loadTrainImage, type GrayImage } from '../cache/planes.js';
import { IterationSampler } from './sampler.js';

export interface TrainingData {
  n: number;
  source: string;
  /** Names image `idx` in messages. */
  describe: (idx: number) => string;
  readImage: (idx: number) => Promise<GrayImage>;
  /** The image folder, when the data is one (the probe's default data). */
  dataRoot: string | null;
  /** Closes what reading holds open (a prepared cache's pixels.bin); the run calls it on every way out. */
  close: () => Promise<void>;
}

const nothingToClose = async (): Promise<void> => undefined;

/** The run's images (`out`: the run folder, whose data/ holds the built-in phantoms). */
export async function openTrainingData(c: PretrainConfig, out: string, log: (m: string) => Promise<void>): Promise<TrainingData> {
  const imgOpts = { equalize: c.data.equalize, baseSize: c.data.base_size };
  if (c.data.cache) {
    const cache = await openCache(c.data.cache);
    if (c.data.base_size !== null && cache.settings.shorterSide !== c.data.base_size) {
      await cache.close();
      throw new ConfigError(
        `data.cache ${cache.dir} was prepared with shorter side ${cache.settings.shorterSide ?? 'none'}, but data.base_size is ${c.data.base_size}; ` +
          'set data.base_size to the same value (or null), or prepare another cache',
      );
    }
    return {
      n: cache.records.length,
      source: `${cache.dir} (prepared cache, ${cache.settings.bitDepth}-bit)`,
      describe: (idx) => `${cache.dir} record ${idx} (${cache.records[idx]?.id})`,
      readImage: (idx) => loadCachedImage(cache, idx, imgOpts),
      dataRoot: null,
      close: () => cache.close(),
    };
  }
  if (c.data.datasets) {
    // Public datasets in their official layouts, mixed for pretraining (docs/recipe.md §1: concatenated = proportional).
    const sources = [];
    const equalize: boolean[] = [];
    for (const [k, entry] of c.data.datasets.entries()) {
      // Per-entry `equalize` overrides data.equalize (CXformer: on for every dataset but RSNA).
      const { weight, equalize: eq, ...rest } = entry;
      if (eq !== undefined && typeof eq !== 'boolean') throw new ConfigError(`data.datasets[${k}].equalize: expected true or false, got ${JSON.stringify(eq)}`);
      equalize.push(eq ?? c.data.equalize);
      const spec = Object.fromEntries(Object.entries(rest).map(([key, v]) => [key.replace(/_([a-z])/g, (_m, ch: string) => ch.toUpperCase()), v]));
      const ds = await loadDataset({ seed: c.seed, ...spec } as unknown as DatasetSpec);
      await log(`data.datasets[${k}]: ${entry.name} at ${entry.root}: ${ds.records.length} images`);
      sources.push({ records: ds.records, weight });
    }
    const plan = mixDatasets(sources, { mode: c.data.mixture, seed: c.seed });
    const records = planRecords(plan, sources);
    return {
      n: records.length,
      source: `${c.data.datasets.length} dataset(s), ${c.data.mixture} mixture`,
      describe: (idx) => (records[idx] as CxrRecord).path,
      readImage: (idx) => loadTrainImage((records[idx] as CxrRecord).path, { ...imgOpts, equalize: equalize[plan.source[idx] as number] as boolean }),
      dataRoot: null,
      close: nothingToClose,
    };
  }
  const root = c.data.root ?? path.join(out, 'data');
  const dataset = await loadImageDataset({ root, manifest: c.data.manifest ?? undefined, pathColumn: c.data.path_column });
  const items: DatasetItem[] = dataset.items;
  return {
    n: items.length,
    source: dataset.source,
    describe: (idx) => (items[idx] as DatasetItem).path,
    readImage: (idx) => loadTrainImage((items[idx] as DatasetItem).path, imgOpts),
    dataRoot: root,
    close: nothingToClose,
  };
}

/**
 * The batches of one rank: stream slot `slot` (iteration·accumulation + micro-batch) holds B images of the rank's
 * shard; up to `prefetch` slots ahead are decoded while the native step runs, at most `workers` decodes at once.
 * An unreadable image is logged and replaced by the next dataset index (deterministic); more than
 * `maxBadFraction` of the data unreadable stops the run.
 */
export class BatchLoader {
  private readonly sampler: IterationSampler;
  private readonly bad = new Set<number>();
  private readonly ahead = new Map<number, Promise<GrayImage[]>>();
  private readonly limit: ReturnType<typeof limiter>;

  constructor(
    private readonly data: TrainingData,
    private readonly o: { batch: number; seed: number; rank: number; world: number; workers: number; prefetch: number; lastSlot: number; maxBadFraction: number; logFile: string },
    private readonly log: (m: string, everyRank?: boolean) => Promise<void>,
  ) {
    this.sampler = new IterationSampler(data.n, o.batch, o.seed, o.rank, o.world);
    // 0 workers = one per core; sharp decodes on libuv's pool.
    this.limit = limiter(o.workers > 0 ? o.workers : availableParallelism());
  }

  /** The images of stream slot `slot`, starting the decode of the following slots. */
  fetch(slot: number): Promise<GrayImage[]> {
    for (let s = slot; s <= Math.min(slot + this.o.prefetch, this.o.lastSlot - 1); s++) {
      if (!this.ahead.has(s)) {
        const p = this.load(s);
        p.catch(() => undefined); // surfaced when awaited
        this.ahead.set(s, p);
      }
    }
    const p = this.ahead.get(slot) ?? this.load(slot);
    this.ahead.delete(slot);
    return p;
  }

  private load(slot: number): Promise<GrayImage[]> {
    return Promise.all(this.sampler.positions(slot).map((pos) => this.limit(() => this.readAt(pos))));
  }

  /** The sampled image at stream position `pos`, or the first readable one after it. */
  private async readAt(pos: number): Promise<GrayImage> {
    const { n } = this.data;
    for (let probe = 0; ; probe++) {
      const idx = (this.sampler.at(pos) + probe) % n;
      if (this.bad.has(idx)) continue;
      try {
        return await this.data.readImage(idx);
      } catch (e) {
        this.bad.add(idx);
        await this.log(`skipping unreadable image ${this.data.describe(idx)}: ${(e as Error).message}`, true);
        if (this.bad.size > this.o.maxBadFraction * n) {
          throw new CxformerError('CXF_INPUT', `${this.bad.size} of ${n} images are unreadable, more than data.max_bad_fraction=${this.o.maxBadFraction}; see ${this.o.logFile}`);
        }
      }
    }
  }
}
