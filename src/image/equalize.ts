/**
 * Global histogram equalisation with the exact semantics of OpenCV's `cv::equalizeHist` (8-bit, one channel),
 * from modules/imgproc/src/histogram.cpp (the same code in OpenCV 3.x–4.x; RISC-V builds route to a separate HAL
 * kernel). Checked bit for bit against cv2.equalizeHist of opencv-python-headless 5.0.0 on random images:
 *
 *   hist  = 256-bin histogram;  i = first non-empty bin;  total = pixel count
 *   if hist[i] == total: every output pixel is i (constant image, unchanged)
 *   scale = 255.f / (total - hist[i])          -- float32 division
 *   lut[i] = 0; sum = 0
 *   for v in i+1..255: sum += hist[v]; lut[v] = saturate_cast<uchar>(sum * scale)   -- float32 product
 *
 * `saturate_cast<uchar>(float)` is `cvRound`, which rounds half to even (SSE2 `cvtss2si` / `lrintf` in the default
 * rounding mode). Both the division and the product are float32, so results can differ from the real-number
 * formula round(255·(C(v) − C(i)) / (P − C(i))): e.g. 7 · fl32(255/14) = 127.4999924 rounds to 127, not 128.
 * Bins below i never occur in the image; their LUT entries are irrelevant (we map them to 0).
 */

/** Round half to even, as cvRound does under the default FP rounding mode. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** 256-bin histogram of 8-bit samples. */
export function histogram256(u8: Uint8Array): Uint32Array {
  const hist = new Uint32Array(256);
  for (let k = 0; k < u8.length; k++) hist[u8[k]!]! += 1;
  return hist;
}

/**
 * The equalisation look-up table OpenCV builds from a 256-bin histogram (see the module comment).
 * For a constant image (one non-empty bin) the table is the identity, so the image is unchanged.
 *
 * @throws RangeError if the histogram does not have 256 bins or is empty
 */
export function equalizeHistLut(hist: ArrayLike<number>): Uint8Array {
  if (hist.length !== 256) throw new RangeError(`equalizeHistLut: expected 256 bins, found ${hist.length}`);
  let total = 0;
  for (let v = 0; v < 256; v++) total += hist[v]!;
  if (total === 0) throw new RangeError('equalizeHistLut: expected a non-empty histogram, found all bins 0');
  const lut = new Uint8Array(256);
  let i = 0;
  while (hist[i]! === 0) i++;
  if (hist[i]! === total) {
    for (let v = 0; v < 256; v++) lut[v] = v;
    return lut;
  }
  // float scale = 255.f / (total - hist[i]);  (the int operand is converted to float first)
  const scale = Math.fround(255 / Math.fround(total - hist[i]!));
  let sum = 0;
  lut[i] = 0;
  for (let v = i + 1; v < 256; v++) {
    sum += hist[v]!;
    const x = Math.fround(Math.fround(sum) * scale); // int * float -> float
    lut[v] = Math.min(255, Math.max(0, roundHalfEven(x)));
  }
  return lut;
}

/**
 * Equalises an 8-bit single-channel image exactly like `cv2.equalizeHist`.
 *
 * @param u8 the plane's samples (any layout: equalisation is global and position-independent)
 * @returns a new array of the same length; an empty input gives an empty output
 */
export function equalizeHist(u8: Uint8Array): Uint8Array {
  if (u8.length === 0) return new Uint8Array(0);
  const lut = equalizeHistLut(histogram256(u8));
  const out = new Uint8Array(u8.length);
  for (let k = 0; k < u8.length; k++) out[k] = lut[u8[k]!]!;
  return out;
}
