/** Errors of the prepared-cache layer. */

/**
 * A problem with a prepared cache or a prepare run: a malformed or corrupt cache, settings that differ from the
 * existing cache, too many unusable images. The code is `CXF_DATA`, which the CLI maps to exit status 2.
 */
export class CacheError extends Error {
  /** Stable error code. */
  readonly code = 'CXF_DATA';
  /** The file concerned, when there is one. */
  readonly file: string | undefined;

  /**
   * @param message what was expected and what was found
   * @param file the file concerned (prefixed to the message)
   */
  constructor(message: string, file?: string) {
    super(file === undefined ? message : `${file}: ${message}`);
    this.name = 'CacheError';
    this.file = file;
  }
}
