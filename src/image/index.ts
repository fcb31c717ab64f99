/**
 * Image decoding and the CXformer evaluation preprocessing (docs/recipe.md §2.8). Pure TypeScript except decoding (sharp).
 */
export { ImageError } from './errors.js';
export { decodeImage, type DecodedImage, type DecodeOptions } from './decode.js';
export { checkPixelLimit, resolveMaxPixels, DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV } from './limits.js';
export { decodeDicom, decodeDicomFloat, type DicomImage, type DicomDecodeOptions } from './dicom.js';
export { rgbToGray, to8Bit, splitChannels, grayPlane8, rgbPlanes8 } from './gray.js';
export { equalizeHist, equalizeHistLut, histogram256 } from './equalize.js';
export {
  resizePlane,
  resizeShorterSide,
  shorterSideSize,
  centerCrop,
  centerCropOffsets,
  type Plane,
  type ResizeOptions,
  type ResampleFilter,
  type CenterCropRounding,
} from './resize.js';
export {
  defaultPreprocess,
  IMAGENET_MEAN,
  IMAGENET_STD,
  resolvePreprocessOptions,
  type PreprocessOptions,
} from './options.js';
export { preprocessorFromHfConfig, readHfPreprocessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD } from './hf-config.js';
export {
  preprocessImage,
  preprocessDecoded,
  preprocessBatch,
  MIN_OUTPUT_SIDE,
  type PreprocessedImage,
  type PreprocessedBatch,
  type ImageSource,
} from './preprocess.js';
