/**
 * Reading a prepared cache: `openCache(dir)` validates cache.json and every index line, keeps pixels.bin open,
 * and reads records with positional reads (optionally checking their CRC-32).
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { crc32 } from './crc32.js';
import { CacheError } from './errors.js';
import { type CacheInfo, type CacheRecord, type CacheSettings, FILES, fromLittleEndianBytes, parseIndex, parseInfo } from './format.js';

export interface OpenCacheOptions {
  /**
   * Open a cache whose run is still going on or was interrupted (cache.json `complete: false`): the records
   * indexed so far are readable, a torn last index line and records past the end of pixels.bin are ignored.
   * @default false
   */
  allowIncomplete?: boolean;
}

export interface ReadOptions {
  /** Check the record's CRC-32; a mismatch is a CacheError naming the record and pixels.bin. @default false */
  verify?: boolean;
}

/** One image read from the cache. */
export interface CachedImage {
  /** Row-major gray samples, height × width (Uint16Array for a 16-bit cache), in a buffer of their own. */
  data: Uint8Array | Uint16Array;
  height: number;
  width: number;
  bitDepth: 8 | 16;
  meta: Record<string, unknown>;
  record: CacheRecord;
}

export interface PreparedCache {
  /** The cache folder (absolute). */
  readonly dir: string;
  readonly info: CacheInfo;
  readonly settings: CacheSettings;
  /** Whether the run that wrote it finished. */
  readonly complete: boolean;
  /** Every record, in file order (`records[i].i === i`). */
  readonly records: readonly CacheRecord[];
  /** Size of pixels.bin in bytes. */
  readonly pixelsBytes: number;
  /** Absolute path of pixels.bin (for memory-mapping it elsewhere). */
  readonly pixelsPath: string;
  has(id: string): boolean;
  /** The record with this index or id, or undefined. */
  get(key: number | string): CacheRecord | undefined;
  /**
   * Reads a record by index or id.
   * @throws CacheError for an unknown index or id, a short read, a CRC mismatch (with verify), or a closed cache
   */
  read(key: number | string, opts?: ReadOptions): Promise<CachedImage>;
  close(): Promise<void>;
}

/**
 * Opens and validates a prepared cache.
 *
 * @throws CacheError naming the file (and line) when cache.json is missing or malformed, the cache is
 *   incomplete (unless allowIncomplete), an index line is malformed or inconsistent (offset not aligned or
 *   overlapping, byteLength ≠ height·width·bytes, wrong bit depth or shorter side, duplicate id, record past
 *   the end of pixels.bin), or the number of lines differs from cache.json
 */
export async function openCache(dir: string, opts: OpenCacheOptions = {}): Promise<PreparedCache> {
  const root = path.resolve(dir);
  const infoPath = path.join(root, FILES.info);
  const indexPath = path.join(root, FILES.index);
  const pixelsPath = path.join(root, FILES.pixels);
  let infoText: string;
  try {
    infoText = await readFile(infoPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CacheError(code === 'ENOENT' ? `not a prepared cache: ${FILES.info} does not exist (run cxformer prepare first)` : (e as Error).message, infoPath);
  }
  const info = parseInfo(infoText, infoPath);
  const allowIncomplete = opts.allowIncomplete === true;
  if (!info.complete && !allowIncomplete) {
    throw new CacheError('the cache is incomplete (a prepare run is going on, was interrupted, or failed); run cxformer prepare again to finish it, or open it with allowIncomplete', infoPath);
  }
  const fh = await open(pixelsPath, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new CacheError(e.code === 'ENOENT' ? 'does not exist' : e.message, pixelsPath);
  });
  try {
    const pixelsBytes = (await fh.stat()).size;
    let indexBytes: Buffer;
    try {
      indexBytes = await readFile(indexPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CacheError(code === 'ENOENT' ? 'does not exist' : (e as Error).message, indexPath);
    }
    const { records } = parseIndex(indexBytes, indexPath, info.settings, pixelsBytes, allowIncomplete);
    if (info.complete && records.length !== info.records) {
      throw new CacheError(`expected ${info.records} records (${FILES.info}), found ${records.length} lines`, indexPath);
    }
    return new Cache(root, info, records, fh, pixelsPath, pixelsBytes);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

class Cache implements PreparedCache {
  readonly settings: CacheSettings;
  readonly complete: boolean;
  private readonly byId: Map<string, CacheRecord>;
  private fh: FileHandle | undefined;

  constructor(
    readonly dir: string,
    readonly info: CacheInfo,
    readonly records: readonly CacheRecord[],
    fh: FileHandle,
    readonly pixelsPath: string,
    readonly pixelsBytes: number,
  ) {
    this.settings = info.settings;
    this.complete = info.complete;
    this.byId = new Map(records.map((r) => [r.id, r] as const));
    this.fh = fh;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get(key: number | string): CacheRecord | undefined {
    return typeof key === 'number' ? (Number.isSafeInteger(key) ? this.records[key] : undefined) : this.byId.get(key);
  }

  async read(key: number | string, opts: ReadOptions = {}): Promise<CachedImage> {
    const rec = this.get(key);
    if (!rec) {
      const what = typeof key === 'number' ? `record ${key} (the cache has ${this.records.length})` : `id '${key}'`;
      throw new CacheError(`no ${what}`, this.dir);
    }
    const fh = this.fh;
    if (!fh) throw new CacheError('the cache is closed', this.dir);
    const bytes = new Uint8Array(rec.byteLength);
    let off = 0;
    while (off < bytes.length) {
      const { bytesRead } = await fh.read(bytes, off, bytes.length - off, rec.offset + off);
      if (bytesRead === 0) {
        throw new CacheError(`record ${rec.i} ('${rec.id}'): expected ${rec.byteLength} bytes at offset ${rec.offset}, the file ended after ${off}`, this.pixelsPath);
      }
      off += bytesRead;
    }
    if (opts.verify) {
      const got = crc32(bytes);
      if (got !== rec.crc32) {
        throw new CacheError(
          `record ${rec.i} ('${rec.id}', ${rec.byteLength} bytes at offset ${rec.offset}): CRC-32 mismatch (index 0x${hex(rec.crc32)}, data 0x${hex(got)}); ` +
            'the file is corrupt: prepare the cache again (overwrite)',
          this.pixelsPath,
        );
      }
    }
    return { data: fromLittleEndianBytes(bytes, rec.bitDepth), height: rec.height, width: rec.width, bitDepth: rec.bitDepth, meta: rec.meta, record: rec };
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
