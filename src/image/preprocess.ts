/**
 * The CXformer evaluation preprocessing (docs/recipe.md §2.8), from a file to a normalised CHW float tensor:
 *
 *   decode → gray (PIL "L") → 8-bit → equalise (OpenCV) → resize shorter side (PIL bicubic, 8-bit)
 *     → center crop (torchvision) → replicate to 3 channels → ·rescale (1/255) → (x − mean_c) / std_c
 *
 * With `grayscale: false` the R, G, B planes go through the same steps separately (equalised each only when
 * `equalize` is on). The last two steps are done in float32 like torchvision's `ToTensor` + `Normalize`
 * (fl32(x · rescale), then fl32(fl32(x − mean) / std)), so the output matches PyTorch to the bit.
 */
import { decodeImage, type DecodedImage } from './decode.js';
import { equalizeHist } from './equalize.js';
import { ImageError } from './errors.js';
import { grayPlane8, rgbPlanes8 } from './gray.js';
import { resolvePreprocessOptions, type PreprocessOptions } from './options.js';
import { centerCrop, resizePlane, shorterSideSize } from './resize.js';

export { defaultPreprocess, IMAGENET_MEAN, IMAGENET_STD, resolvePreprocessOptions, type PreprocessOptions } from './options.js';
export { preprocessorFromHfConfig, readHfPreprocessorConfig } from './hf-config.js';

/** The smallest accepted output side: one ViT patch. */
export const MIN_OUTPUT_SIDE = 14;

/** Where a preprocessed image came from. */
export interface ImageSource {
  width: number;
  height: number;
  channels: 1 | 3;
  bitDepth: 8 | 16;
}

/** One preprocessed image. */
export interface PreprocessedImage {
  /** CHW float32, 3 channels: `data[(c * height + y) * width + x]`. */
  data: Float32Array;
  height: number;
  width: number;
  /** Size and format of the decoded file. */
  source: ImageSource;
}

/** A preprocessed batch. */
export interface PreprocessedBatch {
  /** NCHW float32: `data[((n * 3 + c) * height + y) * width + x]`. */
  data: Float32Array;
  /** [N, 3, H, W]. */
  shape: [number, number, number, number];
  /** The source of each image, in input order. */
  sources: ImageSource[];
}

/**
 * Runs the pipeline on an already decoded image (synchronous, pure).
 *
 * @param name a name for error messages (usually the file path)
 * @throws ImageError naming `name` when the crop is larger than the resized image or the result is smaller than
 *   one 14-px patch
 */
export function preprocessDecoded(img: DecodedImage, options: PreprocessOptions, name: string): PreprocessedImage {
  const opts = resolvePreprocessOptions(options);
  const source: ImageSource = { width: img.width, height: img.height, channels: img.channels, bitDepth: img.bitDepth };

  // 1. 8-bit planes: one gray plane, or R, G, B.
  let planes8: Uint8Array[] = opts.grayscale ? [grayPlane8(img)] : rgbPlanes8(img);
  // 2. Histogram equalisation per plane.
  if (opts.equalize) planes8 = planes8.map(equalizeHist);

  let w = img.width;
  let h = img.height;
  let planes: Float32Array[] = planes8.map((p) => Float32Array.from(p)); // values 0..255

  // 3. Resize (PIL semantics on 8-bit data: rounded after each pass).
  if (opts.resize !== null) {
    const out = typeof opts.resize === 'number' ? shorterSideSize(w, h, opts.resize) : { height: opts.resize[0], width: opts.resize[1] };
    planes = planes.map((p) => resizePlane(p, w, h, out.width, out.height, { filter: opts.resample, roundToUint8: true }));
    w = out.width;
    h = out.height;
  }

  // 4. Center crop.
  if (opts.crop !== null) {
    const [ch, cw] = typeof opts.crop === 'number' ? [opts.crop, opts.crop] : opts.crop;
    if (cw > w || ch > h) {
      throw new ImageError(
        name,
        `expected the image (${img.width}×${img.height}, ${w}×${h} after resizing) to be at least as large as the ` +
          `center crop ${cw}×${ch} (width×height), found it smaller; lower "crop" or raise "resize"`,
      );
    }
    planes = planes.map((p) => centerCrop(p, w, h, cw, ch, opts.cropRounding).data);
    w = cw;
    h = ch;
  }
  if (w < MIN_OUTPUT_SIDE || h < MIN_OUTPUT_SIDE) {
    throw new ImageError(
      name,
      `expected a preprocessed image of at least ${MIN_OUTPUT_SIDE}×${MIN_OUTPUT_SIDE} px (one patch), found ${w}×${h} ` +
        `(source ${img.width}×${img.height})`,
    );
  }

  // 5. Replicate gray to 3 channels, rescale and normalise in float32 (torchvision ToTensor + Normalize).
  const hw = w * h;
  const data = new Float32Array(3 * hw);
  const rescale = opts.rescale;
  for (let c = 0; c < 3; c++) {
    const src = planes[opts.grayscale ? 0 : c]!;
    const mean = Math.fround(opts.mean[c]!);
    const std = Math.fround(opts.std[c]!);
    const dst = c * hw;
    for (let i = 0; i < hw; i++) {
      const x = Math.fround(src[i]! * rescale);
      data[dst + i] = Math.fround(x - mean) / std; // the store rounds the quotient to float32
    }
  }
  return { data, height: h, width: w, source };
}

/**
 * Decodes and preprocesses one image file.
 *
 * # Shapes
 * returns data [3, H, W] (CHW) with H, W from the resize/crop options.
 *
 * @param opts overrides of {@link defaultPreprocess}
 * @throws ImageError naming the file (decode failures, crop larger than the image, result under 14 px)
 */
export async function preprocessImage(path: string, opts: Partial<PreprocessOptions> = {}): Promise<PreprocessedImage> {
  const resolved = resolvePreprocessOptions(opts); // validate before decoding
  const img = await decodeImage(path);
  return preprocessDecoded(img, resolved, path);
}

/**
 * Decodes and preprocesses several files into one NCHW batch (up to 4 decodes in flight, output in input order).
 *
 * # Shapes
 * returns data [N, 3, H, W]; every image must end up the same H×W.
 *
 * @throws ImageError for an empty list, any per-image failure, or images of different final sizes
 */
export async function preprocessBatch(paths: readonly string[], opts: Partial<PreprocessOptions> = {}): Promise<PreprocessedBatch> {
  if (!Array.isArray(paths) || paths.length === 0) {
    throw new ImageError(undefined, `Expected a non-empty list of image paths but received ${JSON.stringify(paths)}`);
  }
  const resolved = resolvePreprocessOptions(opts);
  const images: PreprocessedImage[] = new Array(paths.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const k = next++;
      images[k] = await preprocessImage(paths[k]!, resolved);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, paths.length) }, worker));

  const first = images[0]!;
  const { height: H, width: W } = first;
  const chw = 3 * H * W;
  const data = new Float32Array(paths.length * chw);
  images.forEach((im, n) => {
    if (im.height !== H || im.width !== W) {
      throw new ImageError(
        paths[n],
        `expected every image of the batch to preprocess to ${W}×${H} (width×height, like ${paths[0]}), found ` +
          `${im.width}×${im.height}; set "crop" (or an exact [height, width] "resize") so all images end up the same size`,
      );
    }
    data.set(im.data, n * chw);
  });
  return { data, shape: [paths.length, 3, H, W], sources: images.map((im) => im.source) };
}
