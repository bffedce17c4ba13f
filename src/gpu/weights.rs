//! Weight matrices on the GPU, split by rows into parts that each fit one storage binding.
//!
//! Two layouts (`shaders/quant.wgsl`'s `row_start`): the raw GGUF bytes, or — meant for CPU
//! drivers, whose SIMD lanes each compute one row; `Tuning::interleave_rows` — rows interleaved in
//! groups of 8 at word granularity, so that 8 lanes read 8 consecutive words instead of gathering
//! from 8 rows. The interleaved layout
//! is filled on the GPU: each chunk of file bytes is uploaded as it arrives and a kernel scatters
//! its words (`shaders/interleave.wgsl`), so nothing but the chunk is staged.
//!
//! Two kinds of memory (`Tuning::weights_in_textures`): storage buffers, or — on CPU drivers —
//! `rgba32uint` textures holding the raw layout's words four to a texel, row-major,
//! [`TEXTURE_WIDTH`] texels per texture row. Lavapipe turns a storage load whose address differs
//! per SIMD lane into a loop over the lanes with a stack round trip per lane, but gathers texel
//! fetches in one go: the same reads run about twice as fast from a texture (README,
//! "Texture-backed weights on CPU drivers"). The kernels bind them as read-only storage
//! textures (`texture_storage_2d<rgba32uint, read>`), not sampled ones (`texture_2d<u32>`):
//! lavapipe's sampled-texture fetch works out the mip level's size and offset per lane (two
//! per-lane table lookups and a dozen more instructions per fetch) where a storage texture has
//! one level; Gemma 3's decode step went 103 → 78 ms. Chunks are written texel by texel as they
//! arrive; a texel split between two chunks waits (at most 15 bytes) for the next one.
//!
//! In textures, Q4_1, Q8_0 and Q6_K rows can be stored with their blocks packed
//! (`Tuning::pack_blocks`): their 20-, 34- and 210-byte blocks straddle texels, so the raw layout
//! costs a reader two or three fetches per block (Q6_K: per word) and the shifts to splice the
//! words. Packed, a row is a sequence of groups of 4 (Q4_1) or 8 (Q8_0, Q6_K) blocks, each group
//! one texel holding the blocks' headers (Q4_1: f16 d and m, 4 bytes; Q8_0 and Q6_K: f16 d, 2
//! bytes — Q6_K's the last two bytes of its raw block) in block order, then the rest of each
//! block in whole texels (Q4_1: one, Q8_0: two, Q6_K: its ql, qh and scales in 13); the last
//! group of a row may be shorter. A group takes exactly the bytes of its raw blocks, so only a
//! row's last texel pads (`row_pitch`, a multiple of 16 bytes, is what a row takes). Rows are
//! packed on the CPU as the bytes stream in (on the CPU drivers this layout is for, that is
//! where a GPU kernel would run too); a row split between two chunks waits for the next one.

use std::sync::Mutex;

use super::step::Bind;
use super::{Context, GpuError, Kernel, Step};
use crate::quant::GgmlType;

/// Largest part we create, whatever the device allows: kernels address bytes with u32.
const MAX_PART_BYTES: u64 = 1 << 31;

/// log2 of the texels per row of a weight texture (`shaders/quant.wgsl`'s `TEX_SHIFT`).
pub const TEXTURE_WIDTH_LOG2: u32 = 11;
/// Texels per row of a weight texture: 2048 texels, 32 KiB.
pub const TEXTURE_WIDTH: u32 = 1 << TEXTURE_WIDTH_LOG2;
/// Bytes per `rgba32uint` texel.
pub(super) const TEXEL_BYTES: u64 = 16;

/// Where a part's bytes live.
pub enum PartMemory {
    /// A storage buffer (`array<u32>` in the kernels).
    Buffer(wgpu::Buffer),
    /// An `rgba32uint` texture, byte b in component (b / 4) % 4 of texel b / 16, texel t at
    /// (t % TEXTURE_WIDTH, t / TEXTURE_WIDTH) (`texture_storage_2d<rgba32uint, read>` in the
    /// kernels).
    Texture { texture: wgpu::Texture, view: wgpu::TextureView },
}

/// One storage buffer or texture holding rows `[first_row, first_row + rows)` of a matrix.
pub struct WeightPart {
    pub memory: PartMemory,
    pub first_row: u32,
    pub rows: u32,
    /// Byte offset of this part's first row within the tensor's data.
    pub byte_start: u64,
    pub byte_len: u64,
}

/// A GGML matrix W: [n_rows, k] (GGUF dims `[k, n_rows]`, row-major, each row `row_bytes` long).
pub struct WeightMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub k: u32,
    pub n_rows: u32,
    pub row_bytes: u64,
    /// Bytes one row takes in a part: `row_bytes`, or with packed blocks the packed row's
    /// (whole texels). The kernels address row r of a part at byte r · row_pitch.
    pub row_pitch: u64,
    pub parts: Vec<WeightPart>,
    /// Rows interleaved in groups of [`INTERLEAVE`] (else the raw layout).
    interleaved: bool,
    /// Blocks packed (see the module docs), in texture-backed parts only.
    packing: Option<BlockPacking>,
    /// Texture-backed parts only: the start of a texel (a row, when packed) that a write left
    /// incomplete, waiting for the next write (see [`WeightMatrix::write`]).
    pending: Mutex<Option<Pending>>,
}

/// The start of a texel (or packed row) that one write ended in the middle of.
struct Pending {
    part: usize,
    /// Its first byte within the part's raw bytes (a multiple of 16, or of `row_bytes`).
    dst: u64,
    /// Its bytes so far.
    bytes: Vec<u8>,
}

/// The packed layout of a block type (see the module docs).
#[derive(Clone, Copy, Debug)]
struct BlockPacking {
    /// Bytes of a block's header (its scales), stored together with its group's.
    header_bytes: usize,
    /// Bytes of a block's quants (a multiple of 16).
    quant_bytes: usize,
    /// The header is the raw block's last bytes (Q6_K's d), not its first.
    header_last: bool,
}

impl BlockPacking {
    /// The packed layout of `ty`, if it has one.
    fn of(ty: GgmlType) -> Option<BlockPacking> {
        match ty {
            GgmlType::Q4_1 => Some(BlockPacking { header_bytes: 4, quant_bytes: 16, header_last: false }),
            GgmlType::Q8_0 => Some(BlockPacking { header_bytes: 2, quant_bytes: 32, header_last: false }),
            // ql, qh and the scales (208 bytes, 13 texels), then d.
            GgmlType::Q6_K => Some(BlockPacking { header_bytes: 2, quant_bytes: 208, header_last: true }),
            _ => None,
        }
    }

    /// Blocks per group: as many headers as one texel holds.
    fn group(self) -> usize {
        TEXEL_BYTES as usize / self.header_bytes
    }

    /// Texels of a group of `blocks` blocks: the header texel and the quants.
    fn group_texels(self, blocks: usize) -> usize {
        1 + blocks * self.quant_bytes / TEXEL_BYTES as usize
    }

    /// Bytes of a packed row of `blocks` blocks.
    fn row_pitch(self, blocks: usize) -> u64 {
        let (full, rest) = (blocks / self.group(), blocks % self.group());
        let texels = full * self.group_texels(self.group()) + if rest > 0 { self.group_texels(rest) } else { 0 };
        texels as u64 * TEXEL_BYTES
    }

    /// Packs the raw row `raw` (whole blocks) into `out` (`row_pitch` bytes, zeroed).
    fn pack_row(self, raw: &[u8], out: &mut [u8]) {
        let block_bytes = self.header_bytes + self.quant_bytes;
        let full_group_bytes = self.group_texels(self.group()) * TEXEL_BYTES as usize;
        for (b, block) in raw.chunks_exact(block_bytes).enumerate() {
            let (group, j) = (b / self.group(), b % self.group());
            let header = group * full_group_bytes;
            let (h, q) = (header + j * self.header_bytes, header + TEXEL_BYTES as usize + j * self.quant_bytes);
            let (header_bytes, quants) = if self.header_last {
                let (quants, header_bytes) = block.split_at(self.quant_bytes);
                (header_bytes, quants)
            } else {
                block.split_at(self.header_bytes)
            };
            out[h..h + self.header_bytes].copy_from_slice(header_bytes);
            out[q..q + self.quant_bytes].copy_from_slice(quants);
        }
    }
}

impl WeightPart {
    /// How a kernel binds the part (as `wq_i`).
    pub fn bind(&self) -> Bind<'_> {
        match &self.memory {
            PartMemory::Buffer(buffer) => Bind::Read(buffer),
            PartMemory::Texture { view, .. } => Bind::Texture(view),
        }
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        match &self.memory {
            PartMemory::Buffer(buffer) => buffer.size(),
            PartMemory::Texture { texture, .. } => texture.width() as u64 * texture.height() as u64 * TEXEL_BYTES,
        }
    }
}

/// Rows per interleaved group (a CPU driver's SIMD width in 32-bit lanes).
pub const INTERLEAVE: u64 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct InterleaveParams {
    words: u32,
    first_word: u32,
    row_words: u32,
    _pad: u32,
}

/// Which GGML types the GPU kernels can read.
pub fn gpu_supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS)
}

impl WeightMatrix {
    /// Allocates GPU parts for a `[n_rows, k]` matrix of type `ty` (contents are written later with
    /// [`WeightMatrix::write`]). Errors if the type has no GPU kernel or one row exceeds a binding.
    pub fn allocate(ctx: &Context, name: &str, ty: GgmlType, k: u64, n_rows: u64) -> Result<WeightMatrix, GpuError> {
        Self::allocate_with_part_limit(ctx, name, ty, k, n_rows, Self::part_limit(ctx))
    }

    /// The most bytes [`WeightMatrix::allocate`] puts in one part on this device: one storage
    /// binding, or one texture of the largest size the device allows.
    pub fn part_limit(ctx: &Context) -> u64 {
        let limit = if ctx.tuning.weights_in_textures {
            TEXTURE_WIDTH as u64 * TEXEL_BYTES * ctx.limits.max_texture_rows as u64
        } else {
            ctx.limits.max_storage_binding.min(ctx.limits.max_buffer_size)
        };
        limit.min(MAX_PART_BYTES)
    }

    /// [`WeightMatrix::allocate`] with parts of at most `max_part` bytes (tests use small limits
    /// to exercise splitting).
    pub fn allocate_with_part_limit(
        ctx: &Context,
        name: &str,
        ty: GgmlType,
        k: u64,
        n_rows: u64,
        max_part: u64,
    ) -> Result<WeightMatrix, GpuError> {
        if !gpu_supports(ty) {
            return Err(GpuError::UnsupportedType { tensor: name.to_string(), ty: ty.name() });
        }
        if !k.is_multiple_of(32) || k > u32::MAX as u64 || n_rows > u32::MAX as u64 || n_rows == 0 {
            return Err(GpuError::Shape(format!(
                "tensor '{name}' has shape [{k}, {n_rows}]; matrices need a row length that is a multiple of 32"
            )));
        }
        let row_bytes = ty
            .row_bytes(k)
            .ok_or_else(|| GpuError::Shape(format!("tensor '{name}': row of {k} elements is not whole blocks")))?;
        // Textures where the adapter wants them (blocks packed where the adapter wants it and
        // the type has a packed layout), else interleaved where the adapter wants it and rows are
        // whole words.
        let in_textures = ctx.tuning.weights_in_textures;
        let packing = if in_textures && ctx.tuning.pack_blocks { BlockPacking::of(ty) } else { None };
        let row_pitch = packing.map_or(row_bytes, |p| p.row_pitch((k / ty.block_elems()) as usize));
        let limit = Self::part_limit(ctx);
        let max_part = max_part.min(limit);
        let interleaved = !in_textures && ctx.tuning.interleave_rows && row_bytes.is_multiple_of(4) && max_part / row_bytes >= INTERLEAVE;
        // Parts start at whole rows (whole groups when interleaved) and at 4-byte boundaries
        // (buffer writes are 4-byte aligned).
        let align_rows = if interleaved { INTERLEAVE } else { (4 / gcd(row_bytes, 4)).max(1) };
        let mut rows_per_part = (max_part / row_bytes).min(limit / row_pitch) / align_rows * align_rows;
        if rows_per_part == 0 {
            return Err(GpuError::Limit(format!(
                "tensor '{name}': one row is {row_pitch} bytes but the device binds at most {max_part} bytes"
            )));
        }
        rows_per_part = rows_per_part.min(n_rows);
        let mut parts = Vec::new();
        let mut first = 0u64;
        while first < n_rows {
            let rows = rows_per_part.min(n_rows - first);
            let byte_len = rows * row_bytes;
            let buffer_len = if interleaved { rows.next_multiple_of(INTERLEAVE) * row_bytes } else { byte_len };
            let memory = if in_textures { weight_texture(ctx, name, rows * row_pitch)? } else { PartMemory::Buffer(ctx.storage_buffer(name, buffer_len)?) };
            parts.push(WeightPart { memory, first_row: first as u32, rows: rows as u32, byte_start: first * row_bytes, byte_len });
            first += rows;
        }
        let pending = Mutex::new(None);
        Ok(WeightMatrix { name: name.to_string(), ty, k: k as u32, n_rows: n_rows as u32, row_bytes, row_pitch, parts, interleaved, packing, pending })
    }

    /// Whether the rows are interleaved (see the module docs).
    pub fn interleaved(&self) -> bool {
        self.interleaved
    }

    /// Whether the blocks are packed (see the module docs).
    pub fn packed(&self) -> bool {
        self.packing.is_some()
    }

    /// Whether the parts are textures (see the module docs).
    pub fn in_textures(&self) -> bool {
        matches!(self.parts.first().map(|p| &p.memory), Some(PartMemory::Texture { .. }))
    }

    /// Total bytes of the tensor's data.
    pub fn byte_len(&self) -> u64 {
        self.row_bytes * self.n_rows as u64
    }

    /// Writes `data`, which holds tensor bytes `[offset, offset + data.len())`, into the parts
    /// (scattered into the interleaved layout on the GPU where it applies). `offset` must be a
    /// multiple of 4; a tail that is not is zero-padded. Texture-backed matrices take their
    /// bytes in order (each write starting where the last ended, as `WeightStore::feed` does),
    /// or in writes that each start at a 16-byte boundary of a part (at a row, when packed).
    pub fn write(&self, ctx: &Context, offset: u64, data: &[u8]) {
        let queue = &ctx.queue;
        let end = offset + data.len() as u64;
        for (index, part) in self.parts.iter().enumerate() {
            let lo = offset.max(part.byte_start);
            let hi = end.min(part.byte_start + part.byte_len);
            if lo >= hi {
                continue;
            }
            let chunk = &data[(lo - offset) as usize..(hi - offset) as usize];
            let dst = lo - part.byte_start;
            let padded;
            let chunk = if chunk.len().is_multiple_of(4) {
                chunk
            } else {
                padded = [chunk, &[0u8; 3][..chunk.len().next_multiple_of(4) - chunk.len()]].concat();
                &padded[..]
            };
            match &part.memory {
                PartMemory::Texture { texture, .. } => self.write_texels(ctx, index, texture, dst, chunk),
                PartMemory::Buffer(buffer) if self.interleaved => self.scatter(ctx, buffer, dst, chunk),
                PartMemory::Buffer(buffer) => queue.write_buffer(buffer, dst, chunk),
            }
        }
    }

    /// Writes part bytes `[dst, dst + chunk.len())` of part `index` into its texture: the whole
    /// texels (whole rows, when packed) now, one left incomplete at the end once the next write
    /// completes it (a raw texel is zero-padded when it is the part's last; packed parts end
    /// with a whole row).
    fn write_texels(&self, ctx: &Context, index: usize, texture: &wgpu::Texture, dst: u64, chunk: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let joined;
        let (dst, bytes) = match pending.take() {
            Some(p) if p.part == index && p.dst + p.bytes.len() as u64 == dst => {
                joined = [&p.bytes[..], chunk].concat();
                (p.dst, &joined[..])
            }
            // A write that does not continue the pending bytes starts a texel (row) of its own.
            _ => (dst, chunk),
        };
        let unit = if self.packing.is_some() { self.row_bytes } else { TEXEL_BYTES };
        let whole = bytes.len() as u64 / unit * unit;
        self.write_units(ctx, texture, dst, &bytes[..whole as usize]);
        let rest = &bytes[whole as usize..];
        if rest.is_empty() {
            return;
        }
        let rest_dst = dst + whole;
        if self.packing.is_none() && rest_dst + rest.len() as u64 >= self.parts[index].byte_len {
            let mut last = rest.to_vec();
            last.resize(TEXEL_BYTES as usize, 0);
            write_texel_range(ctx, texture, rest_dst / TEXEL_BYTES, &last);
        } else {
            *pending = Some(Pending { part: index, dst: rest_dst, bytes: rest.to_vec() });
        }
    }

    /// Writes whole texels (raw) or whole rows (packed, repacked here) of part bytes from `dst`.
    fn write_units(&self, ctx: &Context, texture: &wgpu::Texture, dst: u64, bytes: &[u8]) {
        let Some(packing) = self.packing else {
            return write_texel_range(ctx, texture, dst / TEXEL_BYTES, bytes);
        };
        let pitch = self.row_pitch as usize;
        let mut packed = vec![0u8; bytes.len() / self.row_bytes as usize * pitch];
        for (raw, out) in bytes.chunks_exact(self.row_bytes as usize).zip(packed.chunks_exact_mut(pitch)) {
            packing.pack_row(raw, out);
        }
        write_texel_range(ctx, texture, dst / self.row_bytes * self.row_pitch / TEXEL_BYTES, &packed);
    }

    /// Uploads raw words of `part` starting at part byte `dst` and scatters them into the
    /// interleaved layout. A failure (out of memory) surfaces as the device's error.
    fn scatter(&self, ctx: &Context, part: &wgpu::Buffer, dst: u64, chunk: &[u8]) {
        let Ok(staging) = ctx.storage_buffer("weights upload", chunk.len() as u64) else {
            // Larger than a binding: upload in halves.
            let half = (chunk.len() / 2).next_multiple_of(4);
            self.scatter(ctx, part, dst, &chunk[..half]);
            self.scatter(ctx, part, dst + half as u64, &chunk[half..]);
            return;
        };
        ctx.queue.write_buffer(&staging, 0, chunk);
        let words = (chunk.len() / 4) as u32;
        let params = InterleaveParams { words, first_word: (dst / 4) as u32, row_words: (self.row_bytes / 4) as u32, _pad: 0 };
        let mut step = Step::new(ctx);
        let buffers = [Bind::Read(&staging), Bind::Write(part)];
        // Recording only fails for a shader that does not compile (a bug): the device error says so.
        if step.dispatch(Kernel::Interleave, "main", &Default::default(), &params, &buffers, words.div_ceil(64)).is_ok() {
            step.submit(None);
        }
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(WeightPart::gpu_bytes).sum()
    }
}

/// A texture for a part of `bytes` bytes: [`TEXTURE_WIDTH`] texels wide, as many rows as needed.
fn weight_texture(ctx: &Context, name: &str, bytes: u64) -> Result<PartMemory, GpuError> {
    let (texture, view) = texel_texture(ctx, &format!("tensor '{name}'"), bytes, wgpu::TextureUsages::empty())?;
    Ok(PartMemory::Texture { texture, view })
}

/// Rows of [`TEXTURE_WIDTH`] texels that hold `bytes` bytes (at least one).
pub(super) fn texture_rows(bytes: u64) -> u64 {
    bytes.div_ceil(TEXEL_BYTES).div_ceil(TEXTURE_WIDTH as u64).max(1)
}

/// A zeroed `rgba32uint` texture of [`texture_rows`]`(bytes)` rows of [`TEXTURE_WIDTH`] texels,
/// bindable as a read-only storage texture and writable by copies, plus any `extra` usages, and
/// its view;
/// or a limit error naming `what` when the device's textures are not that tall.
pub(super) fn texel_texture(ctx: &Context, what: &str, bytes: u64, extra: wgpu::TextureUsages) -> Result<(wgpu::Texture, wgpu::TextureView), GpuError> {
    let rows = texture_rows(bytes);
    if rows > ctx.limits.max_texture_rows as u64 {
        return Err(GpuError::Limit(format!(
            "{what}: {bytes} bytes need a texture of {rows} rows but the device allows {}",
            ctx.limits.max_texture_rows
        )));
    }
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(what),
        size: wgpu::Extent3d { width: TEXTURE_WIDTH, height: rows as u32, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST | extra,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    Ok((texture, view))
}

/// Writes `bytes` (whole texels) into `texture` from texel `first` on, row by row: a partial
/// first row, the full rows in one write, a partial last row.
pub(super) fn write_texel_range(ctx: &Context, texture: &wgpu::Texture, first: u64, bytes: &[u8]) {
    let width = TEXTURE_WIDTH as u64;
    let (mut texel, end) = (first, first + bytes.len() as u64 / TEXEL_BYTES);
    while texel < end {
        let (x, y) = (texel % width, texel / width);
        // A partial row (from x, or up to `end`), else every full row left.
        let (columns, rows) = if x != 0 || end - texel < width { ((width - x).min(end - texel), 1) } else { (width, (end - texel) / width) };
        let from = ((texel - first) * TEXEL_BYTES) as usize;
        let len = (columns * rows * TEXEL_BYTES) as usize;
        ctx.queue.write_texture(
            wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d { x: x as u32, y: y as u32, z: 0 }, aspect: wgpu::TextureAspect::All },
            &bytes[from..from + len],
            wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some((columns * TEXEL_BYTES) as u32), rows_per_image: Some(rows as u32) },
            wgpu::Extent3d { width: columns as u32, height: rows as u32, depth_or_array_layers: 1 },
        );
        texel += columns * rows;
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
