//! How fast a shader reads weights on this adapter, by memory path (profiling aid for the matrix
//! kernels): `cargo run --release --example load_paths`.
//!
//! 1. Raw reads: every invocation reads 64 consecutive words of its own (as a matvec lane reads
//!    its own row) from a storage buffer as `u32` or `vec4<u32>`, from an `rgba32uint` texture
//!    (sampled, or bound as a read-only storage texture as the kernels do; also with eight
//!    neighbouring invocations' texels interleaved), or from a 64 KiB uniform
//!    buffer (the same words over and over: that one measures the load instructions, not memory).
//! 2. SmolLM2's output head (Q8_0, 49152 × 576) as a decode matvec, four rows per thread and the
//!    input in a uniform buffer, its blocks repacked (a block's 32 quant bytes as two 16-byte
//!    texels, the f16 scales apart, eight per texel) and read from storage buffers or from
//!    textures, raw or with the rows of each group of 8 interleaved texel by texel. All must give
//!    the same sums.
//!
//! On lavapipe (Mesa 22) a storage-buffer load whose address differs per lane is compiled to a
//! loop over the 8 SIMD lanes that inserts each lane's word into a vector through the stack, a
//! store-forwarding stall per lane and word; texel fetches are gathered without that (README,
//! "Why the matrix kernels stop at ~1 GB/s on lavapipe").
use ferrolm::gpu::Context;
use std::time::Instant;

const WORDS: u32 = 16 << 20; // 64 MiB: more than the caches
const THREADS: u32 = WORDS / 64;
/// Texels (16 bytes each) per texture row.
const TEX_WIDTH: u32 = 4096;

fn main() {
    let ctx = pollster::block_on(Context::new()).unwrap();
    println!("{}", ctx.adapter_name);
    raw_reads(&ctx);
    output_head(&ctx);
}

/// Part 1 of the module docs.
fn raw_reads(ctx: &Context) {
    let data: Vec<u32> = (0..WORDS).map(|i| i.wrapping_mul(2654435761)).collect();
    let storage = storage(ctx, &data);
    let texture = texture(ctx, &data);
    let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("uniform"),
        size: 65536,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&uniform, 0, bytemuck::cast_slice(&data[..16384]));
    let out = ctx.storage_buffer("out", THREADS as u64 * 4).unwrap();
    for kind in ["storage u32", "storage vec4", "texture rgba32uint", "storage texture rgba32uint", "texture interleaved", "uniform vec4"] {
        let (decl, body) = match kind {
            "storage u32" => ("var<storage, read> w: array<u32>", "for (var j = 0u; j < 64u; j++) { acc += w[i * 64u + j]; }"),
            "storage vec4" => ("var<storage, read> w: array<vec4<u32>>", "for (var j = 0u; j < 16u; j++) { acc += xor4(w[i * 16u + j]); }"),
            "texture rgba32uint" => ("var w: texture_2d<u32>", "for (var j = 0u; j < 16u; j++) { let t = i * 16u + j; acc += xor4(textureLoad(w, texel(t), 0)); }"),
            // The same texture bound as a read-only storage texture (what the kernels bind):
            // one mip level, so no per-lane level lookups.
            "storage texture rgba32uint" => ("var w: texture_storage_2d<rgba32uint, read>", "for (var j = 0u; j < 16u; j++) { let t = i * 16u + j; acc += xor4(textureLoad(w, texel(t))); }"),
            // The same texels with neighbouring invocations' interleaved (invocation i's texel j
            // at 8 (16 (i / 8) + j) + i % 8): a SIMD batch's eight fetches fall in two cache lines.
            "texture interleaved" => ("var w: texture_2d<u32>", "for (var j = 0u; j < 16u; j++) { let t = 8u * (16u * (i / 8u) + j) + i % 8u; acc += xor4(textureLoad(w, texel(t), 0)); }"),
            _ => ("var<uniform> w: array<vec4<u32>, 4096>", "for (var j = 0u; j < 16u; j++) { acc += xor4(w[(i * 16u + j) & 4095u]); }"),
        };
        let texel_fn = texel_fn();
        let source = format!(
            "@group(0) @binding(0) {decl};
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
fn xor4(v: vec4<u32>) -> u32 {{ return v.x ^ v.y ^ v.z ^ v.w; }}
{texel_fn}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let i = gid.x;
    var acc = 0u;
    {body}
    out[i] = acc;
}}"
        );
        let resource = match kind {
            "texture rgba32uint" | "storage texture rgba32uint" | "texture interleaved" => wgpu::BindingResource::TextureView(&texture),
            "uniform vec4" => uniform.as_entire_binding(),
            _ => storage.as_entire_binding(),
        };
        for ms in time(ctx, &source, &[resource, out.as_entire_binding()], THREADS / 64) {
            println!("{kind:20} {ms:7.3} ms per {} MiB  {:6.2} GB/s of words read", WORDS >> 18, WORDS as f64 * 4.0 / ms / 1e6);
        }
    }
}

/// Part 2 of the module docs.
fn output_head(ctx: &Context) {
    let (rows, blocks) = (49152u32, 18u32);
    let n_blocks = rows * blocks;
    let quant_words: Vec<u32> = (0..n_blocks * 8).map(|i| i.wrapping_mul(2654435761)).collect();
    let scale_words: Vec<u32> = (0..n_blocks.div_ceil(8) * 4).map(|i| 0x3c00_3800 ^ (i & 0x0100_0100)).collect();
    let x = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("x"),
        size: 576 * 4,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let x_values: Vec<f32> = (0..576).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    ctx.queue.write_buffer(&x, 0, bytemuck::cast_slice(&x_values));
    let out = ctx.storage_buffer("out", rows as u64 * 4).unwrap();
    let (quant_buffer, scale_buffer) = (storage(ctx, &quant_words), storage(ctx, &scale_words));
    let (quant_texture, scale_texture) = (texture(ctx, &quant_words), texture(ctx, &scale_words));
    // The quants with the rows of each group of 8 interleaved texel by texel: texel q of row r at
    // ((r / 8) · 36 + q) · 8 + r % 8, so that eight threads on eight consecutive rows fetch from
    // two cache lines, and a batch walks one stream instead of eight.
    let mut interleaved = vec![0u32; quant_words.len()];
    for (t, texel) in quant_words.chunks(4).enumerate() {
        let (r, q) = (t / 36, t % 36);
        let dest = ((r / 8) * 36 + q) * 8 + r % 8;
        interleaved[dest * 4..dest * 4 + 4].copy_from_slice(texel);
    }
    let interleaved_texture = texture(ctx, &interleaved);
    let mut sums = Vec::new();
    for path in ["storage", "texture", "texture, rows interleaved"] {
        let (decl, load) = match path {
            "storage" => ("var<storage, read> wq: array<vec4<u32>>;\n@group(0) @binding(3) var<storage, read> ws: array<vec4<u32>>", "W[t]"),
            _ => ("var wq: texture_2d<u32>;\n@group(0) @binding(3) var ws: texture_2d<u32>", "textureLoad(W, texel(t), 0)"),
        };
        let mut quant_load = load.replace('W', "wq");
        // Thread i takes rows 4i .. 4i + 4, or with interleaved rows rows 32 (i / 8) + i % 8 + 8j.
        let mut row = "gid.x * 4u + j";
        if path == "texture, rows interleaved" {
            quant_load = "textureLoad(wq, texel(((t / 288u) * 36u + t % 36u) * 8u + (t / 36u) % 8u), 0)".to_string();
            row = "(gid.x / 8u) * 32u + gid.x % 8u + 8u * j";
        }
        let source = HEAD_SHADER
            .replace("{{TEXEL_FN}}", &texel_fn())
            .replace("{{DECL}}", decl)
            .replace("{{QUANTS}}", &quant_load)
            .replace("{{SCALES}}", &load.replace('W', "ws"))
            .replace("{{ROW}}", row);
        let (quants, scales) = match path {
            "storage" => (quant_buffer.as_entire_binding(), scale_buffer.as_entire_binding()),
            "texture" => (wgpu::BindingResource::TextureView(&quant_texture), wgpu::BindingResource::TextureView(&scale_texture)),
            _ => (wgpu::BindingResource::TextureView(&interleaved_texture), wgpu::BindingResource::TextureView(&scale_texture)),
        };
        for ms in time(ctx, &source, &[quants, out.as_entire_binding(), x.as_entire_binding(), scales], rows / 4 / 64) {
            println!("Q8_0 head 49152x576 {path:26} {ms:7.3} ms  {:6.2} GB/s of Q8_0 weights", n_blocks as f64 * 34.0 / ms / 1e6);
        }
        sums.push(pollster::block_on(ctx.read_f32(&out, rows as usize)).unwrap());
    }
    assert_eq!(sums[0], sums[1], "the storage and texture heads disagree");
    assert_eq!(sums[0], sums[2], "the raw and interleaved heads disagree");
    assert!(sums[0].iter().any(|&v| v != 0.0), "the head computed nothing");
}

/// The output head's kernel; `{{DECL}}` declares `wq` and `ws`, `{{QUANTS}}` / `{{SCALES}}` read
/// their texel `t`, `{{TEXEL_FN}}` is [`texel_fn`].
const HEAD_SHADER: &str = "
@group(0) @binding(0) {{DECL}};
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> x: array<vec4<f32>, 144>;
{{TEXEL_FN}}
fn quants(t: u32) -> vec4<u32> { return {{QUANTS}}; }
fn scales(t: u32) -> vec4<u32> { return {{SCALES}}; }
fn i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(v << 24u), bitcast<i32>(v << 16u), bitcast<i32>(v << 8u), bitcast<i32>(v)) >> vec4<u32>(24u));
}
// Block b of row r (n = r * 18 + b): its f16 scale is number n of the scales (8 per texel), its
// quants texels 2n and 2n + 1.
fn block(r: u32, b: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    let n = r * 18u + b;
    let d = unpack2x16float(scales(n / 8u)[(n / 2u) % 4u])[n % 2u];
    let qa = quants(2u * n);
    let qb = quants(2u * n + 1u);
    let s = dot(i8x4(qa.x), x0) + dot(i8x4(qa.y), x1) + dot(i8x4(qa.z), x2) + dot(i8x4(qa.w), x3)
        + dot(i8x4(qb.x), x4) + dot(i8x4(qb.y), x5) + dot(i8x4(qb.z), x6) + dot(i8x4(qb.w), x7);
    return d * s;
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = vec4<f32>(0.0);
    for (var b = 0u; b < 18u; b++) {
        let e = b * 8u;
        let x0 = x[e]; let x1 = x[e + 1u]; let x2 = x[e + 2u]; let x3 = x[e + 3u];
        let x4 = x[e + 4u]; let x5 = x[e + 5u]; let x6 = x[e + 6u]; let x7 = x[e + 7u];
        for (var j = 0u; j < 4u; j++) {
            acc[j] += block({{ROW}}, b, x0, x1, x2, x3, x4, x5, x6, x7);
        }
    }
    for (var j = 0u; j < 4u; j++) { out[{{ROW}}] = acc[j]; }
}";

/// WGSL `texel(t)`: where [`texture`] put texel `t`.
fn texel_fn() -> String {
    format!("fn texel(t: u32) -> vec2<u32> {{ return vec2<u32>(t % {TEX_WIDTH}u, t / {TEX_WIDTH}u); }}")
}

/// A storage buffer holding `words`.
fn storage(ctx: &Context, words: &[u32]) -> wgpu::Buffer {
    let buffer = ctx.storage_buffer("words", words.len() as u64 * 4).unwrap();
    ctx.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(words));
    buffer
}

/// An `rgba32uint` texture holding `words`, four per texel, TEX_WIDTH texels per row (the last
/// row zero-padded).
fn texture(ctx: &Context, words: &[u32]) -> wgpu::TextureView {
    let texels = words.len().div_ceil(4) as u32;
    let size = wgpu::Extent3d { width: TEX_WIDTH, height: texels.div_ceil(TEX_WIDTH), depth_or_array_layers: 1 };
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("words"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let mut padded = words.to_vec();
    padded.resize((size.width * size.height * 4) as usize, 0);
    ctx.queue.write_texture(
        wgpu::TexelCopyTextureInfo { texture: &texture, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
        bytemuck::cast_slice(&padded),
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(TEX_WIDTH * 16), rows_per_image: Some(size.height) },
        size,
    );
    texture.create_view(&Default::default())
}

/// Compiles `source` (entry `main`), binds `resources` at bindings 0, 1, ... and returns the ms
/// per dispatch of `workgroups` workgroups in two timed rounds of 10 (after one untimed round).
fn time(ctx: &Context, source: &str, resources: &[wgpu::BindingResource], workgroups: u32) -> Vec<f64> {
    let device = &ctx.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(source.into()) });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let entries: Vec<wgpu::BindGroupEntry> =
        resources.iter().enumerate().map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource: resource.clone() }).collect();
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
    let reps = 10;
    let mut timings = Vec::new();
    for round in 0..3 {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(workgroups, 1, 1);
            }
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        if round > 0 {
            timings.push(start.elapsed().as_secs_f64() * 1000.0 / reps as f64);
        }
    }
    timings
}
