//! One layer's KV cache as the attention kernels bind it (`shaders/kv.wgsl`): keys then values,
//! each [ctx_len, n_kv_heads, head_dim], element e of part `part` (0 keys, 1 values) at position
//! `pos` being element (part · ctx_len + pos) · kv_dim + e.
//!
//! - In a storage buffer: f16 pairs (`pack2x16float`, the even element in the low half) or f32.
//! - In an `rgba32uint` texture (CPU drivers, f16 only): eight elements to a texel as four f16
//!   pairs, element e in texel e / 8, texel t at (t % [`TEXTURE_WIDTH`], t / [`TEXTURE_WIDTH`]).
//!   `attn_in` writes whole texels (`texture_storage_2d<rgba32uint, write>`) and the attention
//!   kernel loads them (`texture_storage_2d<rgba32uint, read>`): lavapipe gathers a texel per
//!   lane several times faster than it loads a storage word per lane, the same reason the
//!   weights live in textures there (`gpu::weights`, which also says why storage textures).

use super::weights::{texel_texture, texture_rows, write_texel_range, TEXEL_BYTES, TEXTURE_WIDTH};
use super::{Bind, Context, GpuError};

/// f16 elements per texel.
pub const KV_TEXEL_ELEMS: u64 = 8;

/// One layer's KV cache (see the module docs).
pub enum KvLayer {
    Buffer(wgpu::Buffer),
    Texture { texture: wgpu::Texture, view: wgpu::TextureView },
}

impl KvLayer {
    /// A zeroed storage buffer of `words` words.
    pub fn buffer(ctx: &Context, label: &str, words: u64) -> Result<KvLayer, GpuError> {
        Ok(KvLayer::Buffer(ctx.storage_buffer(label, words * 4)?))
    }

    /// A zeroed texture for `elems` f16 elements (a multiple of 8), or a limit error when the
    /// device's largest texture cannot hold them.
    pub fn texture(ctx: &Context, label: &str, elems: u64) -> Result<KvLayer, GpuError> {
        if !elems.is_multiple_of(KV_TEXEL_ELEMS) {
            return Err(GpuError::Shape(format!("KV cache '{label}': {elems} elements do not fill whole texels of {KV_TEXEL_ELEMS}")));
        }
        let usage = wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC;
        let (texture, view) = texel_texture(ctx, &format!("KV cache '{label}'"), elems * 2, usage)?;
        Ok(KvLayer::Texture { texture, view })
    }

    /// Texture rows [`KvLayer::texture`] needs for `elems` f16 elements.
    pub fn texture_rows(elems: u64) -> u64 {
        texture_rows(elems * 2)
    }

    pub fn in_texture(&self) -> bool {
        matches!(self, KvLayer::Texture { .. })
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> u64 {
        match self {
            KvLayer::Buffer(b) => b.size(),
            KvLayer::Texture { texture, .. } => texture.width() as u64 * texture.height() as u64 * TEXEL_BYTES,
        }
    }

    /// How a kernel that reads the cache binds it.
    pub fn bind_read(&self) -> Bind<'_> {
        match self {
            KvLayer::Buffer(b) => Bind::Read(b),
            KvLayer::Texture { view, .. } => Bind::Texture(view),
        }
    }

    /// How a kernel that writes the cache binds it.
    pub fn bind_write(&self) -> Bind<'_> {
        match self {
            KvLayer::Buffer(b) => Bind::Write(b),
            KvLayer::Texture { view, .. } => Bind::StorageTexture(view),
        }
    }

    /// Writes the cache's words from the start: f32 bits or f16 pairs as the buffer holds them;
    /// for a texture f16 pairs, four to a texel (a partial last texel is zero-padded).
    pub fn write_words(&self, ctx: &Context, words: &[u32]) {
        match self {
            KvLayer::Buffer(b) => ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(words)),
            KvLayer::Texture { texture, .. } => {
                let mut bytes: Vec<u8> = bytemuck::cast_slice(words).to_vec();
                bytes.resize(bytes.len().next_multiple_of(TEXEL_BYTES as usize), 0);
                write_texel_range(ctx, texture, 0, &bytes);
            }
        }
    }

    /// Reads the first `n` words back (as [`KvLayer::write_words`] takes them).
    pub async fn read_words(&self, ctx: &Context, n: usize) -> Result<Vec<u32>, GpuError> {
        let bytes = match self {
            KvLayer::Buffer(b) => ctx.read_buffer(b, n as u64 * 4).await?,
            KvLayer::Texture { texture, .. } => {
                let row_bytes = TEXTURE_WIDTH as u64 * TEXEL_BYTES;
                let rows = (n as u64 * 4).div_ceil(row_bytes).min(texture.height() as u64).max(1);
                let staging = ctx.storage_buffer("kv readback", rows * row_bytes)?;
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                encoder.copy_texture_to_buffer(
                    wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
                    wgpu::TexelCopyBufferInfo {
                        buffer: &staging,
                        layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row_bytes as u32), rows_per_image: Some(rows as u32) },
                    },
                    wgpu::Extent3d { width: TEXTURE_WIDTH, height: rows as u32, depth_or_array_layers: 1 },
                );
                ctx.queue.submit([encoder.finish()]);
                ctx.read_buffer(&staging, n as u64 * 4).await?
            }
        };
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
