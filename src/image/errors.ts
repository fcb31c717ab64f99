/** Error raised by the image decoding and preprocessing code. */
export class ImageError extends Error {
  /** Stable error code. */
  readonly code = 'CXF_IMAGE';
  /** The image file concerned, when there is one. */
  readonly path: string | undefined;

  /**
   * @param path the file concerned (prefixed to the message), or undefined for in-memory data
   * @param message what was expected and what was found
   */
  constructor(path: string | undefined, message: string) {
    super(path === undefined ? message : `${path}: ${message}`);
    this.name = 'ImageError';
    this.path = path;
  }
}
