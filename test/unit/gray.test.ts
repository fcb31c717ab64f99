import { describe, expect, it } from 'vitest';

import type { DecodedImage } from '../../src/image/decode.js';
import { grayPlane8, rgbPlanes8, rgbToGray, splitChannels, to8Bit } from '../../src/image/gray.js';

describe('rgbToGray (PIL convert("L"))', () => {
  it('applies (R·19595 + G·38470 + B·7471 + 0x8000) >> 16', () => {
    const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 255, 255, 255, 0, 0, 0, 1, 1, 1]);
    // red: (4996725 + 32768) >> 16 = 76; green: (9809850 + 32768) >> 16 = 150; blue: (1905105 + 32768) >> 16 = 29
    // (10, 20, 30): (195950 + 769400 + 224130 + 32768) >> 16 = 1222248 >> 16 = 18; white 255; black 0; (1,1,1) -> 1
    expect([...rgbToGray(rgb)]).toEqual([76, 150, 29, 18, 255, 0, 1]);
  });

  it('works at 16 bits with the same weights', () => {
    const rgb = Uint16Array.from([65535, 65535, 65535, 65535, 0, 0, 1000, 2000, 3000]);
    // white: 65535·65536 + 32768 >> 16 = 65535; red: (65535·19595 + 32768) >> 16 = 19595 (19594.7 -> floor of +0.5)
    // (1000, 2000, 3000): (19595000 + 76940000 + 22413000 + 32768) >> 16 = 118980768 >> 16 = 1815
    expect([...rgbToGray(rgb)]).toEqual([65535, 19595, 1815]);
    expect(rgbToGray(rgb)).toBeInstanceOf(Uint16Array);
  });

  it('rejects data that is not RGB-interleaved', () => {
    expect(() => rgbToGray(new Uint8Array(4))).toThrow(/multiple of 3/);
  });
});

describe('to8Bit (round(v / 257))', () => {
  it('maps the 16-bit range onto 0..255 and inverts v·257', () => {
    // 128/257 = 0.498 -> 0; 129/257 = 0.502 -> 1; 32767/257 = 127.498 -> 127; 32896 = 128·257 -> 128
    expect([...to8Bit(Uint16Array.from([0, 128, 129, 257, 32767, 32896, 65535]))]).toEqual([0, 0, 1, 1, 127, 128, 255]);
    const all8 = Uint16Array.from({ length: 256 }, (_, v) => v * 257);
    expect([...to8Bit(all8)]).toEqual(Array.from({ length: 256 }, (_, v) => v));
  });
});

describe('plane helpers', () => {
  const img = (data: Uint8Array | Uint16Array, channels: 1 | 3, bitDepth: 8 | 16): DecodedImage => ({
    width: data.length / channels,
    height: 1,
    channels,
    bitDepth,
    data,
    format: 'png',
  });

  it('splits interleaved channels', () => {
    const [r, g, b] = splitChannels(Uint8Array.from([1, 2, 3, 4, 5, 6]), 3);
    expect([...r!, ...g!, ...b!]).toEqual([1, 4, 2, 5, 3, 6]);
  });

  it('grayPlane8 converts RGB then reduces 16-bit data', () => {
    expect([...grayPlane8(img(Uint8Array.from([255, 0, 0, 9, 9, 9]), 3, 8))]).toEqual([76, 9]);
    expect([...grayPlane8(img(Uint16Array.from([65535, 0, 0]), 3, 16))]).toEqual([76]); // 19595/257 = 76.2
    expect([...grayPlane8(img(Uint16Array.from([257 * 200, 1000]), 1, 16))]).toEqual([200, 4]); // 1000/257 = 3.9
    const gray8 = Uint8Array.from([5, 6]);
    const out = grayPlane8(img(gray8, 1, 8));
    expect([...out]).toEqual([5, 6]);
    expect(out).not.toBe(gray8);
  });

  it('rgbPlanes8 replicates gray and reduces each 16-bit channel', () => {
    expect(rgbPlanes8(img(Uint8Array.from([7, 8]), 1, 8)).map((p) => [...p])).toEqual([[7, 8], [7, 8], [7, 8]]);
    expect(rgbPlanes8(img(Uint16Array.from([65535, 257, 0]), 3, 16)).map((p) => [...p])).toEqual([[255], [1], [0]]);
  });
});
