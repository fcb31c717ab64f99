/** Prepared caches: decoded, gray, resized images packed in one memory-mappable file (see format.md). */
export { prepareCache, allowedBad, type PrepareItem, type PrepareOptions, type PrepareProgress, type PrepareResult } from './prepare.js';
export { openCache, type CachedImage, type OpenCacheOptions, type PreparedCache, type ReadOptions } from './reader.js';
export { convertForCache, processFile, sizeProblem, type ConvertedImage, type ConvertSettings, type ItemOutcome } from './convert.js';
export { crc32 } from './crc32.js';
export { CacheError } from './errors.js';
export { threadsAvailable, type ExecutionMode } from './pool.js';
export {
  ALIGNMENT,
  CACHE_FORMAT,
  CACHE_VERSION,
  FILES as CACHE_FILES,
  type CacheInfo,
  type CacheRecord,
  type CacheReport,
  type CacheSettings,
  type SkippedItem,
  type SkipReason,
} from './format.js';
