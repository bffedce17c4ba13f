// Writes llama.cpp `gguf-split`-style shards of a GGUF file, for the loader tests: shard k is a
// GGUF of its own holding a contiguous run of the tensors, with split.no / split.count /
// split.tensors.count metadata; the first shard also keeps all the original metadata.
import fs from "node:fs";
import path from "node:path";

const FIXED = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const STRING = 8;
const ARRAY = 9;

/** Parses the header: key/value entries as raw bytes, tensor infos, alignment, data start. */
function parseHeader(buf) {
  let p = 0;
  const u32 = () => { const v = buf.readUInt32LE(p); p += 4; return v; };
  const u64 = () => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  const str = () => { const n = u64(); const s = buf.toString("utf8", p, p + n); p += n; return s; };
  const skip = (type) => {
    if (type === STRING) {
      const n = u64(); // (not `p += u64()`: that would add to p's value before the call)
      p += n;
    }
    else if (type === ARRAY) {
      const elem = u32();
      const n = u64();
      if (elem === STRING || elem === ARRAY) for (let i = 0; i < n; i++) skip(elem);
      else p += n * FIXED[elem];
    } else p += FIXED[type];
  };
  if (buf.toString("latin1", 0, 4) !== "GGUF") throw new Error("not a GGUF file");
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kvs = [];
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const start = p;
    const key = str();
    const type = u32();
    if (key === "general.alignment") alignment = buf.readUInt32LE(p);
    skip(type);
    kvs.push({ key, bytes: Buffer.from(buf.subarray(start, p)) });
  }
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  return { version, kvs, tensors, alignment, dataStart };
}

function kv(key, type, value) {
  const k = Buffer.from(key, "utf8");
  const head = Buffer.alloc(8 + k.length + 4);
  head.writeBigUInt64LE(BigInt(k.length), 0);
  k.copy(head, 8);
  head.writeUInt32LE(type, 8 + k.length);
  const v = Buffer.alloc(FIXED[type]);
  if (type === 2) v.writeUInt16LE(value);
  else if (type === 4) v.writeUInt32LE(value);
  else if (type === 5) v.writeInt32LE(value);
  return Buffer.concat([head, v]);
}

/** Splits `src` into `count` shards in `outDir`; returns their paths in order. */
export function splitGguf(src, outDir, count) {
  const fd = fs.openSync(src, "r");
  const size = fs.fstatSync(fd).size;
  const head = Buffer.alloc(Math.min(size, 16 << 20));
  fs.readSync(fd, head, 0, head.length, 0);
  const h = parseHeader(head);
  const sorted = [...h.tensors].sort((a, b) => a.offset - b.offset);
  sorted.forEach((t, i) => { t.bytes = (i + 1 < sorted.length ? sorted[i + 1].offset : size - h.dataStart) - t.offset; });
  // Contiguous runs of about equal bytes.
  const total = sorted.reduce((a, t) => a + t.bytes, 0);
  const groups = Array.from({ length: count }, () => []);
  let acc = 0;
  for (const t of sorted) {
    groups[Math.min(count - 1, Math.floor((acc / total) * count))].push(t);
    acc += t.bytes;
  }
  const paths = [];
  for (let k = 0; k < count; k++) {
    const entries = k === 0 ? h.kvs.map((e) => e.bytes) : [];
    if (k > 0 && h.alignment !== 32) entries.push(kv("general.alignment", 4, h.alignment));
    entries.push(kv("split.no", 2, k), kv("split.count", 2, count), kv("split.tensors.count", 5, h.tensors.length));
    const infos = [];
    let offset = 0;
    for (const t of groups[k]) {
      const name = Buffer.from(t.name, "utf8");
      const info = Buffer.alloc(8 + name.length + 4 + 8 * t.dims.length + 4 + 8);
      let p = info.writeBigUInt64LE(BigInt(name.length), 0);
      p += name.copy(info, p);
      p = info.writeUInt32LE(t.dims.length, p);
      for (const d of t.dims) p = info.writeBigUInt64LE(BigInt(d), p);
      p = info.writeUInt32LE(t.type, p);
      info.writeBigUInt64LE(BigInt(offset), p);
      infos.push(info);
      offset += Math.ceil(t.bytes / h.alignment) * h.alignment;
    }
    const fixed = Buffer.alloc(24);
    fixed.write("GGUF", 0, "latin1");
    fixed.writeUInt32LE(3, 4);
    fixed.writeBigUInt64LE(BigInt(groups[k].length), 8);
    fixed.writeBigUInt64LE(BigInt(entries.length), 16);
    let header = Buffer.concat([fixed, ...entries, ...infos]);
    header = Buffer.concat([header, Buffer.alloc(Math.ceil(header.length / h.alignment) * h.alignment - header.length)]);
    const out = path.join(outDir, `model-${String(k + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.gguf`);
    const w = fs.openSync(out, "w");
    fs.writeSync(w, header);
    for (const t of groups[k]) {
      const data = Buffer.alloc(Math.ceil(t.bytes / h.alignment) * h.alignment);
      fs.readSync(fd, data, 0, t.bytes, h.dataStart + t.offset);
      fs.writeSync(w, data);
    }
    fs.closeSync(w);
    paths.push(out);
  }
  fs.closeSync(fd);
  return paths;
}
