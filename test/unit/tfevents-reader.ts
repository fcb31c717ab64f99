/**
 * A strict, independent reader of TensorBoard event files for the tests: its own TFRecord framing with a bitwise
 * CRC-32C (no table, nothing shared with src/run/tensorboard.ts) checking BOTH checksums of every complete record,
 * and its own protobuf wire decoder for the Event messages (tensorboard/compat/proto/event.proto, summary.proto,
 * tensor.proto). A torn last record (a writer killed mid-append) is reported, never read; a bad checksum or a
 * malformed message in a complete record throws.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Bitwise CRC-32C (reflected polynomial 0x82F63B78). */
export function crc32cBitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const masked = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) % 2 ** 32;

/** The complete records of a TFRecord stream, and the size of a torn tail (0 when the stream ends on a record). */
export function readRecords(buf: Uint8Array): { records: Uint8Array[]; tornBytes: number } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  while (at < buf.length) {
    if (buf.length - at < 12) break;
    const len = Number(view.getBigUint64(at, true));
    if (view.getUint32(at + 8, true) !== masked(crc32cBitwise(buf.subarray(at, at + 8)))) throw new Error(`record at ${at}: length CRC mismatch`);
    if (buf.length - at < 12 + len + 4) break;
    const data = buf.subarray(at + 12, at + 12 + len);
    if (view.getUint32(at + 12 + len, true) !== masked(crc32cBitwise(data))) throw new Error(`record at ${at}: data CRC mismatch`);
    records.push(data);
    at += 12 + len + 4;
  }
  return { records, tornBytes: buf.length - at };
}

type Field = { no: number; wire: number; varint?: bigint; fixed64?: DataView; fixed32?: DataView; bytes?: Uint8Array };

/** The fields of one protobuf message, in order (wire types 0, 1, 2, 5 only). */
function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (at >= buf.length) throw new Error('truncated varint');
      const b = buf[at++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  const take = (n: number) => {
    if (at + n > buf.length) throw new Error(`field overruns the message (${n} bytes at ${at} of ${buf.length})`);
    const s = buf.subarray(at, at + n);
    at += n;
    return s;
  };
  while (at < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (no === 0) throw new Error('field number 0');
    if (wire === 0) out.push({ no, wire, varint: varint() });
    else if (wire === 1) {
      const s = take(8);
      out.push({ no, wire, fixed64: new DataView(s.buffer, s.byteOffset, 8) });
    } else if (wire === 2) out.push({ no, wire, bytes: take(Number(varint())) });
    else if (wire === 5) {
      const s = take(4);
      out.push({ no, wire, fixed32: new DataView(s.buffer, s.byteOffset, 4) });
    } else throw new Error(`unexpected wire type ${wire} (field ${no})`);
  }
  return out;
}

const utf8 = (b: Uint8Array) => new TextDecoder('utf-8', { fatal: true }).decode(b);

/** `f`, checked to have wire type `type`. */
function wire(f: Field, type: number, what: string): Field {
  if (f.wire !== type) throw new Error(`${what}: wire type ${f.wire}, expected ${type}`);
  return f;
}

export interface SummaryValue {
  tag: string;
  simpleValue?: number;
  pluginName?: string;
  tensor?: { dtype: number; rank: number; strings: string[] };
}

export interface TbEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  sessionStatus?: number;
  values?: SummaryValue[];
}

function decodeValue(buf: Uint8Array): SummaryValue {
  const v: SummaryValue = { tag: '' };
  for (const f of fields(buf)) {
    if (f.no === 1) v.tag = utf8(wire(f, 2, 'Value.tag').bytes!);
    else if (f.no === 2) v.simpleValue = wire(f, 5, 'Value.simple_value').fixed32!.getFloat32(0, true);
    else if (f.no === 9) {
      wire(f, 2, 'Value.metadata');
      for (const m of fields(f.bytes!)) if (m.no === 1) for (const p of fields(m.bytes!)) if (p.no === 1) v.pluginName = utf8(p.bytes!);
    } else if (f.no === 8) {
      wire(f, 2, 'Value.tensor');
      const t = { dtype: 0, rank: -1, strings: [] as string[] };
      for (const g of fields(f.bytes!)) {
        if (g.no === 1) t.dtype = Number(g.varint);
        else if (g.no === 2) t.rank = fields(g.bytes!).filter((d) => d.no === 2).length;
        else if (g.no === 8) t.strings.push(utf8(g.bytes!));
      }
      v.tensor = t;
    } else throw new Error(`unexpected Summary.Value field ${f.no}`);
  }
  return v;
}

/** Decodes one Event message. */
export function decodeEvent(buf: Uint8Array): TbEvent {
  const e: TbEvent = { wallTime: NaN, step: 0 };
  for (const f of fields(buf)) {
    if (f.no === 1) e.wallTime = wire(f, 1, 'Event.wall_time').fixed64!.getFloat64(0, true);
    else if (f.no === 2) e.step = Number(BigInt.asIntN(64, wire(f, 0, 'Event.step').varint!));
    else if (f.no === 3) e.fileVersion = utf8(wire(f, 2, 'Event.file_version').bytes!);
    else if (f.no === 5) {
      wire(f, 2, 'Event.summary');
      e.values = fields(f.bytes!).map((v) => {
        if (v.no !== 1) throw new Error(`unexpected Summary field ${v.no}`);
        return decodeValue(v.bytes!);
      });
    } else if (f.no === 7) {
      wire(f, 2, 'Event.session_log');
      e.sessionStatus = Number(fields(f.bytes!).find((s) => s.no === 1)?.varint ?? 0n);
    } else if (f.no === 10) wire(f, 2, 'Event.source_metadata');
    else throw new Error(`unexpected Event field ${f.no}`);
  }
  return e;
}

/** The events files of a run folder, in the order TensorBoard reads them (sorted by name). */
export function eventFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('events.out.tfevents.'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Every event of one file; each file must start with `file_version: brain.Event:2`. */
export function readEventFile(file: string): { events: TbEvent[]; tornBytes: number } {
  const { records, tornBytes } = readRecords(new Uint8Array(readFileSync(file)));
  const events = records.map(decodeEvent);
  if (events[0]?.fileVersion !== 'brain.Event:2') throw new Error(`${file}: the first event is not file_version brain.Event:2`);
  return { events, tornBytes };
}

/**
 * What TensorBoard shows for a run folder: the scalars per tag as [step, value] in reading order, with
 * purge_orphaned_data (each `SessionLog START` at step s drops what was read before at step ≥ s), and the text
 * summaries by tag.
 */
export function readRun(dir: string): { scalars: Map<string, Array<[number, number]>>; texts: Map<string, string[]>; files: string[] } {
  const scalars = new Map<string, Array<[number, number]>>();
  const texts = new Map<string, string[]>();
  const files = eventFiles(dir);
  for (const file of files) {
    for (const e of readEventFile(file).events) {
      if (e.sessionStatus === 1) for (const [tag, pts] of scalars) scalars.set(tag, pts.filter(([s]) => s < e.step));
      for (const v of e.values ?? []) {
        if (v.simpleValue !== undefined) scalars.set(v.tag, [...(scalars.get(v.tag) ?? []), [e.step, v.simpleValue]]);
        if (v.tensor) texts.set(v.tag, [...(texts.get(v.tag) ?? []), ...v.tensor.strings]);
      }
    }
  }
  return { scalars, texts, files };
}
