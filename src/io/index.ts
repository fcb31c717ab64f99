/**
 * File formats: safetensors (validated reader, atomic writer) and 16-bit float conversions.
 */
export {
  readSafetensorsHeader,
  readSafetensors,
  writeSafetensors,
  SafetensorsError,
  DTYPE_SIZE,
  DTYPES,
  MAX_HEADER_BYTES,
  type DType,
  type TypedArray,
  type TensorInfo,
  type SafetensorsHeader,
  type LoadedTensor,
  type SafetensorsContents,
  type TensorToWrite,
} from './safetensors.js';
export {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  bf16ArrayToF32,
  f16ArrayToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
} from './half.js';
