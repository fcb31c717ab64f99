/**
 * TensorBoard event files beside metrics.jsonl (issue #14): every trainer's rank 0 mirrors each metrics line as
 * scalars, and the resolved settings as one text summary, so that `tensorboard --logdir runs/` shows one run per run
 * folder.
 *
 * File: `<run folder>/events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<n>`, a TFRecord stream
 * (tensorflow/core/lib/io/record_writer.cc): per record
 *   u64 LE length · u32 LE masked CRC32C(length bytes) · data · u32 LE masked CRC32C(data),
 *   masked(crc) = ((crc >>> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32),
 * each record one `tensorboard.Event` (tensorboard/compat/proto/event.proto):
 *   Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 (Summary),
 *           session_log = 7 (SessionLog { status = 1: START = 1 }), source_metadata = 10 ({ writer = 1 }) }
 *   Summary { value = 1 (repeated Value) }                                              (summary.proto)
 *   Value { tag = 1, simple_value = 2 (float), tensor = 8 (TensorProto), metadata = 9 (SummaryMetadata) }
 *   SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1 } }
 *   TensorProto { dtype = 1 (DT_STRING = 7, types.proto), tensor_shape = 2 (empty: a scalar), string_val = 8 }
 *                                                                                        (tensor.proto)
 * The messages are encoded with @bufbuild/protobuf's BinaryWriter (no generated code: five small messages).
 *
 * Kill safety: a record is appended with one write of its whole frame, so after a kill at any point the file is its
 * complete records followed by at most one torn record, which TensorBoard's reader skips. Each start of a trainer
 * opens a NEW file (old ones are never rewritten); its first event after `file_version` is `SessionLog START` at the
 * first step this start can write, and TensorBoard (purge_orphaned_data, on by default) then drops the older files'
 * events at or after that step: the lines a killed run wrote after its last checkpoint, which metrics.jsonl drops
 * too (src/run/folder.ts `keepJsonl`). File names sort in creation order (a start in the same second as an older file
 * takes the next second), which is the order TensorBoard reads a folder's files in.
 *
 * Each trainer has a setting that turns its files off (pretraining `log.tensorboard`, fine-tuning and segmentation
 * `tensorboard`, configs/downstream/defaults.json); `CXFORMER_TENSORBOARD=0` in the environment turns them off for
 * every trainer.
 */
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

// ---- CRC32C ----

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) table, one entry per byte value. */
const CRC32C_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32C (iSCSI, RFC 3720 B.4; the TFRecord checksum): initial value and final XOR 0xFFFFFFFF.
 * `crc32c('123456789') === 0xe3069283`. One table lookup per byte: event records are a few hundred bytes.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The TFRecord masking of a CRC (record_writer.h `MaskedCrc`): rotate right by 15, add 0xa282ead8. */
export function maskCrc(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord frame around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskCrc(crc32c(out.subarray(0, 8))), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskCrc(crc32c(data)), true);
  return out;
}

// ---- Event messages ----

/** tensorflow DataType DT_STRING (types.proto). */
const DT_STRING = 7;
/** SessionLog.SessionStatus START. */
const SESSION_START = 1;

/** Event { wall_time, step } followed by the caller's fields. */
function event(wallTime: number, step: number, body: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.Bit64).double(wallTime);
  w.tag(2, WireType.Varint).int64(step);
  body(w);
  return w.finish();
}

/** Summary.Value { tag, simple_value }. */
function scalarValue(w: BinaryWriter, tag: string, value: number): void {
  w.tag(1, WireType.LengthDelimited).fork();
  w.tag(1, WireType.LengthDelimited).string(tag);
  w.tag(2, WireType.Bit32).float(value);
  w.join();
}

/** Summary.Value { tag, metadata: text plugin, tensor: scalar DT_STRING }: what `tf.summary.text` writes. */
function textValue(w: BinaryWriter, tag: string, text: string): void {
  w.tag(1, WireType.LengthDelimited).fork();
  w.tag(1, WireType.LengthDelimited).string(tag);
  w.tag(9, WireType.LengthDelimited).fork(); // SummaryMetadata
  w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string('text').join(); // PluginData
  w.join();
  w.tag(8, WireType.LengthDelimited).fork(); // TensorProto
  w.tag(1, WireType.Varint).int32(DT_STRING);
  w.tag(2, WireType.LengthDelimited).bytes(new Uint8Array(0)); // TensorShapeProto {}: rank 0
  w.tag(8, WireType.LengthDelimited).bytes(new TextEncoder().encode(text));
  w.join();
  w.join();
}

// ---- metrics → tags ----

const SCHEDULE_KEYS = new Set(['lr', 'wd', 'momentum', 'teacherTemp', 'lastLayerLr', 'headLr', 'backboneLr']);

/**
 * The TensorBoard tag of a metrics.jsonl field (nested objects joined with `/`, e.g. `valDice/lungs`), the field name
 * kept after a group: `probe/` (the pretraining probe), `val/` (validation), `time/` (stage timings in ms,
 * images/s, seconds), `grad/` (gradient norms), `schedule/` (lr, wd, momentum, teacher temperature), `progress/`
 * (epoch, best epoch so far), `train/` (loss terms and everything else).
 */
export function metricTag(key: string): string {
  if (key.startsWith('probe_')) return `probe/${key}`;
  if (/^val(_|[A-Z])/.test(key)) return `val/${key}`;
  if (/^ms_|^images_?per_?s$|^imagesPerS$|^it_per_s$|^seconds$/.test(key)) return `time/${key}`;
  if (/^grad_?norm/i.test(key)) return `grad/${key}`;
  if (SCHEDULE_KEYS.has(key)) return `schedule/${key}`;
  if (/^(epoch|best_epoch|bestEpoch|bestDiceAvg)$/.test(key)) return `progress/${key}`;
  return `train/${key}`;
}

/**
 * The scalars of one metrics record: every finite number, nested objects flattened with `/`; strings, booleans, nulls,
 * NaN and ±∞ (which metrics.jsonl holds as null) and the keys in `skip` (the step) left out.
 */
export function metricScalars(record: object, skip: readonly string[] = []): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      if (!prefix && skip.includes(k)) continue;
      const key = prefix + k;
      if (typeof v === 'number' && Number.isFinite(v)) out.set(metricTag(key), v);
      else if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${key}/`);
    }
  };
  walk(record as Record<string, unknown>, '');
  return out;
}

// ---- the writer ----

export const EVENTS_PREFIX = 'events.out.tfevents.';
const EVENTS_RE = /^events\.out\.tfevents\.(\d+)\./;

/** Whether the environment turned the event files off (`CXFORMER_TENSORBOARD=0`, `false` or `off`). */
export function tensorboardEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return !/^(0|false|off|no)$/i.test(env.CXFORMER_TENSORBOARD ?? '');
}

export interface EventFileOptions {
  /** The first step this start can write: older files' events from this step on are superseded. @default 0 */
  firstStep?: number;
  /** The resolved settings, written once as the text summary `config` (shown as preformatted text). */
  config?: string;
  /** Clock in ms (tests). @default Date.now */
  now?: () => number;
}

/** Appends events to one new events file; every method writes through (one append per call). */
export class EventFile {
  private constructor(
    /** The file's path. */
    readonly file: string,
    private readonly now: () => number,
  ) {}

  /**
   * Starts a new events file in `dir` (which must exist): `file_version`, `SessionLog START` at `firstStep`, and the
   * config text if given. Returns null when `CXFORMER_TENSORBOARD=0`.
   */
  static create(dir: string, o: EventFileOptions = {}): EventFile | null {
    if (!tensorboardEnabled()) return null;
    const now = o.now ?? Date.now;
    // A start in the same second as an existing file (a quick resume) takes the next second: names sort in order.
    let newest = 0;
    for (const name of readdirSync(dir)) newest = Math.max(newest, Number(EVENTS_RE.exec(name)?.[1] ?? 0));
    const seconds = Math.max(Math.floor(now() / 1000), newest + 1);
    const host = hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'localhost';
    const wall = now() / 1000;
    const first = event(wall, 0, (w) => {
      w.tag(3, WireType.LengthDelimited).string('brain.Event:2');
      w.tag(10, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string('cxformer').join();
    });
    const step = o.firstStep ?? 0;
    const start = event(wall, step, (w) => w.tag(7, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(SESSION_START).join());
    const records = [tfRecord(first), tfRecord(start)];
    if (o.config !== undefined) {
      // Four-space indentation: a Markdown code block in TensorBoard's text plugin (the YAML keeps its layout).
      const text = o.config.replace(/\n$/, '').split('\n').map((l) => `    ${l}`).join('\n');
      records.push(tfRecord(event(wall, step, (w) => summary(w, (s) => textValue(s, 'config', text)))));
    }
    for (let n = 0; ; n++) {
      const file = path.join(dir, `${EVENTS_PREFIX}${String(seconds).padStart(10, '0')}.${host}.${process.pid}.${n}`);
      try {
        // 'wx': a new file, never an old one continued.
        writeFileSync(file, concat(records), { flag: 'wx' });
        return new EventFile(file, now);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }

  /** One event with every scalar of `values` (tag → value) at `step`. Nothing is written for an empty map. */
  scalars(step: number, values: ReadonlyMap<string, number>): void {
    if (!values.size) return;
    const data = event(this.now() / 1000, step, (w) =>
      summary(w, (s) => {
        for (const [tag, v] of values) scalarValue(s, tag, v);
      }),
    );
    appendFileSync(this.file, tfRecord(data));
  }

  /** The numbers of a metrics.jsonl record as scalars at `step` (see `metricTag`); `skip`: fields left out. */
  metrics(step: number, record: object, skip: readonly string[] = []): void {
    this.scalars(step, metricScalars(record, skip));
  }
}

/** Event.summary: a Summary whose values `body` writes. */
function summary(w: BinaryWriter, body: (s: BinaryWriter) => void): void {
  w.tag(5, WireType.LengthDelimited).fork();
  body(w);
  w.join();
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
