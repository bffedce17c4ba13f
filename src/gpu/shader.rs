//! WGSL sources, a small typed preprocessor for their variants, explicit bind-group layouts and
//! the pipeline cache.
//!
//! Preprocessor: `#if NAME` / `#elif NAME` / `#else` / `#endif` keep lines when the flag NAME is
//! set; `{{NAME}}` is replaced by a constant's value; `#for i < NAME` ... `#endfor` repeats the
//! lines between them for i = 0 .. the constant NAME, `{{i}}` replaced by i (loops unrolled at
//! build time, for kernels that keep a head's values in named registers: CPU drivers keep private
//! arrays in memory).
//!
//! Quantized weights are read by `load8` from `shaders/quant.wgsl`, specialised to one block type.
//! A kernel that reads several matrices of different types (Q, K and V of a Q4_K_M file mix Q4_K
//! and Q6_K) gets one *instance* of the readers per matrix: the preprocessed reader source with
//! every top-level name suffixed (`load8` → `load8_1`, `wq` → `wq_1`, …). The type of matrix `i`
//! is the define `T{i}` (a GGML type id).
//!
//! Every kernel has the same binding scheme, so bind-group layouts are explicit and shared:
//! `@binding(0)` its static uniform parameters, `@binding(1)` the per-step state ([`StepState`]),
//! then its storage buffers from `@binding(2)` in the order the op passes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::quant::GgmlType;

/// One WGSL kernel family: its source file and the shared files it needs in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// Quantized matrix × activations, optionally RMSNorm-ing the input and soft-capping.
    Matvec,
    /// RMSNorm → gate and up projections → SwiGLU / GeGLU.
    FfnIn,
    /// RMSNorm → Q, K, V projections → biases, Q/K norms, RoPE, KV-cache write.
    AttnIn,
    Embed,
    /// RMSNorm of rows: a matrix kernel's input (`rms_norm`), Gemma's post-norms with the
    /// residual add (`post_norm_add`).
    Norm,
    /// Split-K attention partials over the KV cache.
    Attention,
    /// Combines the attention partials.
    AttentionCombine,
    TopK,
    /// Scatters raw weight words into the interleaved row layout (at load).
    Interleave,
}

const QUANT_WGSL: &str = include_str!("../../shaders/quant.wgsl");
const ROWDOT_WGSL: &str = include_str!("../../shaders/rowdot.wgsl");
const MATVEC_COMMON_WGSL: &str = include_str!("../../shaders/matvec_common.wgsl");
const MATH_WGSL: &str = include_str!("../../shaders/math.wgsl");
const KV_WGSL: &str = include_str!("../../shaders/kv.wgsl");
const STATE_WGSL: &str = include_str!("../../shaders/state.wgsl");

/// Block types whose whole 32-element blocks rowdot.wgsl reads at once with `block_dot_x`
/// (BLOCK_X32), the input loaded once per block (`load_x32`) and shareable between rows.
pub(super) fn reads_whole_blocks(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0)
}

/// A hash (FNV-1a, 64 bits, hex) of every WGSL source: part of the key under which autotuning
/// choices are cached, so that a build whose kernels changed times them again even when the
/// version number did not.
pub fn shader_fingerprint() -> String {
    let shared = [QUANT_WGSL, ROWDOT_WGSL, MATVEC_COMMON_WGSL, MATH_WGSL, KV_WGSL, STATE_WGSL];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for source in shared.into_iter().chain(Kernel::ALL.map(Kernel::body)) {
        for byte in source.bytes() {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

impl Kernel {
    /// How many quantized matrices (reader instances) the kernel reads.
    fn matrices(self) -> usize {
        match self {
            Kernel::Matvec | Kernel::Embed => 1,
            Kernel::FfnIn => 2,
            Kernel::AttnIn => 3,
            _ => 0,
        }
    }

    const ALL: [Kernel; 9] = [
        Kernel::Matvec,
        Kernel::FfnIn,
        Kernel::AttnIn,
        Kernel::Embed,
        Kernel::Norm,
        Kernel::Attention,
        Kernel::AttentionCombine,
        Kernel::TopK,
        Kernel::Interleave,
    ];

    /// The kernel's own WGSL file.
    fn body(self) -> &'static str {
        match self {
            Kernel::Matvec => include_str!("../../shaders/matvec.wgsl"),
            Kernel::FfnIn => include_str!("../../shaders/ffn_in.wgsl"),
            Kernel::AttnIn => include_str!("../../shaders/attn_in.wgsl"),
            Kernel::Embed => include_str!("../../shaders/embed.wgsl"),
            Kernel::Norm => include_str!("../../shaders/norm.wgsl"),
            Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
            Kernel::AttentionCombine => include_str!("../../shaders/attention_combine.wgsl"),
            Kernel::TopK => include_str!("../../shaders/topk.wgsl"),
            Kernel::Interleave => include_str!("../../shaders/interleave.wgsl"),
        }
    }

    fn source(self, defines: &Defines) -> Result<String, String> {
        let body = self.body();
        let mut src = String::new();
        // Browsers (Tint) need the extension enabled; Naga takes subgroup builtins without it
        // (and rejects the directive) once the device has the feature.
        if cfg!(target_arch = "wasm32") && ["SG_REDUCE", "X_BROADCAST", "QUERY_LANES", "LANES_TOPK"].iter().any(|f| defines.is_set(f)) {
            src.push_str("enable subgroups;\n");
        }
        if matches!(self, Kernel::AttnIn | Kernel::Attention | Kernel::TopK) {
            src.push_str(STATE_WGSL);
        }
        if matches!(self, Kernel::Matvec | Kernel::FfnIn | Kernel::AttnIn) {
            src.push_str(MATVEC_COMMON_WGSL);
        }
        if matches!(self, Kernel::AttnIn | Kernel::Attention | Kernel::FfnIn | Kernel::Matvec) {
            src.push_str(MATH_WGSL);
        }
        if matches!(self, Kernel::AttnIn | Kernel::Attention) {
            src.push_str(KV_WGSL);
        }
        src.push_str(body);
        let mut out = preprocess(&src, defines);
        for (i, type_define) in TYPE_DEFINES.iter().enumerate().take(self.matrices()) {
            let ty = defines
                .get(type_define)
                .and_then(GgmlType::from_id)
                .ok_or_else(|| format!("{self:?}: no block type given for matrix {i}"))?;
            let mut readers = String::from(QUANT_WGSL);
            if self != Kernel::Embed {
                readers.push_str(ROWDOT_WGSL);
            }
            let mut typed = defines.clone().flag(ty.name());
            if reads_whole_blocks(ty) {
                typed = typed.flag("BLOCK_X32");
            }
            if defines.is_set(LAYOUT_DEFINES[i]) {
                typed = typed.flag("INTERLEAVED");
            }
            if defines.is_set(TEXTURE_DEFINES[i]) {
                typed = typed.flag("TEXTURE").constant("TEX_SHIFT", super::weights::TEXTURE_WIDTH_LOG2);
            }
            if defines.is_set(PACKED_DEFINES[i]) {
                typed = typed.flag("PACKED");
            }
            if defines.is_set(VEC4_DEFINES[i]) {
                typed = typed.flag("VEC4");
            }
            // Q4_K's and Q5_K's 16-byte groups (`group_dot_x`), from vec4 words (set only for
            // those types, see `Defines::matrix`) or a raw texture.
            let raw_texture = defines.is_set(TEXTURE_DEFINES[i]) && !defines.is_set(PACKED_DEFINES[i]);
            // Q6_K's when packed in a texture (`gpu::weights`).
            let packed = defines.is_set(PACKED_DEFINES[i]);
            let groups = defines.is_set(VEC4_DEFINES[i]) || (raw_texture && reads_vec4(ty)) || (packed && ty == GgmlType::Q6_K);
            if groups {
                typed = typed.flag("GROUP_X32");
            }
            // Packed Q4_1 / Q8_0: decode fetches a group's scale texel once (`row_dot4`).
            if packed && reads_whole_blocks(ty) {
                typed = typed.flag("PACKED_HEADS");
            }
            // Prefill tiles a block (or group) of 32 at a time where the type has such readers
            // (`block_weights`; the kernel-wide BLOCK_TILES, see `matmul`).
            if defines.is_set("BLOCK_TILES") && (groups || reads_whole_blocks(ty)) {
                typed = typed.flag("TILE_BLOCKS");
            }
            out.push_str(&instance(&preprocess(&readers, &typed), &format!("_{i}")));
        }
        Ok(out)
    }
}

/// The defines naming the block type of matrix 0, 1, 2 of a kernel.
pub const TYPE_DEFINES: [&str; 3] = ["T0", "T1", "T2"];
/// The flags saying matrix 0, 1, 2 has its rows interleaved (`gpu::weights`).
const LAYOUT_DEFINES: [&str; 3] = ["IL0", "IL1", "IL2"];
/// The flags saying matrix 0, 1, 2 is bound as a texture (`gpu::weights`; the kernels declare
/// `wq_i` as `texture_storage_2d<rgba32uint, read>` then).
const TEXTURE_DEFINES: [&str; 3] = ["TX0", "TX1", "TX2"];
/// The flags saying matrix 0, 1, 2 has its blocks packed (`gpu::weights`; textures only).
const PACKED_DEFINES: [&str; 3] = ["PK0", "PK1", "PK2"];

/// The flags saying matrix 0, 1, 2 is bound as `array<vec4<u32>>` (the kernels declare `wq_i`
/// so then; see [`reads_vec4`]).
const VEC4_DEFINES: [&str; 3] = ["V40", "V41", "V42"];

/// Block types a storage-buffer matrix in the raw layout is bound for as 16-byte words: their
/// blocks (144 and 176 bytes) start at 16-byte boundaries and their readers load whole 16-byte
/// groups (`group_dot_x` in rowdot.wgsl; GPUs issue one load per group instead of four). From a
/// raw texture they read the same groups as texels.
pub(super) fn reads_vec4(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K)
}

/// The defines one variant of a kernel is built with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Defines(BTreeMap<&'static str, u32>);

impl Defines {
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets a flag tested by `#if NAME`.
    pub fn flag(mut self, name: &'static str) -> Self {
        self.0.insert(name, 1);
        self
    }
    /// Sets a constant substituted for `{{NAME}}` (also true for `#if` when non-zero).
    pub fn constant(mut self, name: &'static str, value: u32) -> Self {
        self.0.insert(name, value);
        self
    }
    /// Sets the block type of matrix `i` (see [`TYPE_DEFINES`]).
    pub fn matrix_type(self, i: usize, ty: GgmlType) -> Self {
        self.constant(TYPE_DEFINES[i], ty.id())
    }
    /// Sets the block type, the layouts and the binding kind of the weight matrix read as
    /// matrix `i`.
    pub fn matrix(self, i: usize, w: &super::WeightMatrix) -> Self {
        let mut d = self.matrix_type(i, w.ty);
        if w.interleaved() {
            d = d.flag(LAYOUT_DEFINES[i]);
        }
        if w.in_textures() {
            d = d.flag(TEXTURE_DEFINES[i]);
        }
        if w.packed() {
            d = d.flag(PACKED_DEFINES[i]);
        }
        if !w.in_textures() && !w.interleaved() && reads_vec4(w.ty) {
            d = d.flag(VEC4_DEFINES[i]);
        }
        d
    }
    fn get(&self, name: &str) -> Option<u32> {
        self.0.get(name).copied()
    }
    fn is_set(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| *v != 0)
    }
}

/// Expands `#for`/`#endfor`, `#if`/`#elif`/`#else`/`#endif` and `{{NAME}}` in `source`.
pub fn preprocess(source: &str, defines: &Defines) -> String {
    let source = expand_for(source, defines);
    // Each open #if: (this branch is live, some branch of this #if was already taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let trimmed = line.trim_start();
        let parent_live = stack.iter().all(|(live, _)| *live);
        if let Some(name) = trimmed.strip_prefix("#if ") {
            let taken = defines.is_set(name.trim());
            stack.push((taken, taken));
        } else if let Some(name) = trimmed.strip_prefix("#elif ") {
            if let Some(top) = stack.last_mut() {
                let live = !top.1 && defines.is_set(name.trim());
                *top = (live, top.1 || live);
            }
        } else if trimmed.starts_with("#else") {
            if let Some(top) = stack.last_mut() {
                *top = (!top.1, true);
            }
        } else if trimmed.starts_with("#endif") {
            stack.pop();
        } else if parent_live {
            let mut text = line.to_string();
            for (name, value) in &defines.0 {
                let token = format!("{{{{{name}}}}}");
                if text.contains(&token) {
                    text = text.replace(&token, &value.to_string());
                }
            }
            out.push_str(&text);
            out.push('\n');
        } else {
            out.push('\n'); // keep line numbers stable for error messages
        }
    }
    out
}

/// Repeats the lines of each `#for VAR < NAME` ... `#endfor` block (not nested) for VAR = 0 ..
/// the constant NAME (none when NAME is not set), `{{VAR}}` replaced by the count, `{{VAR/N}}` and
/// `{{VAR%N}}` (N a number) by its quotient and remainder.
fn expand_for(source: &str, defines: &Defines) -> String {
    let mut out = String::with_capacity(source.len());
    let mut block: Option<(String, u32, Vec<&str>)> = None;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if let Some((var, count, lines)) = &mut block {
            if trimmed.starts_with("#endfor") {
                for i in 0..*count {
                    for l in lines.iter() {
                        out.push_str(&for_tokens(l, var, i));
                        out.push('\n');
                    }
                }
                block = None;
            } else {
                lines.push(line);
            }
        } else if let Some((var, name)) = trimmed.strip_prefix("#for ").and_then(|rest| rest.split_once('<')) {
            block = Some((var.trim().to_string(), defines.get(name.trim()).unwrap_or(0), Vec::new()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `line` with `#for` variable `var` at `i`: `{{var}}`, `{{var/N}}` and `{{var%N}}` replaced.
fn for_tokens(line: &str, var: &str, i: u32) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(&format!("{{{{{var}")) {
        let after = &rest[start + 2 + var.len()..];
        let Some(end) = after.find("}}") else { break };
        let op = &after[..end];
        let value = match (op.chars().next(), op.get(1..).and_then(|n| n.parse::<u32>().ok())) {
            (None, _) => Some(i),
            (Some('/'), Some(n)) if n > 0 => Some(i / n),
            (Some('%'), Some(n)) if n > 0 => Some(i % n),
            _ => None,
        };
        out.push_str(&rest[..start]);
        match value {
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str(&rest[start..start + 2 + var.len() + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Suffixes every name `source` declares at the top level (`fn`, `struct`, `const`, `var`), and
/// the weight buffer `wq` it reads, with `suffix`: one independent copy of the block readers.
pub fn instance(source: &str, suffix: &str) -> String {
    let mut names: Vec<&str> = vec!["wq"];
    for line in source.lines() {
        let decl = ["fn ", "struct ", "const ", "var "]
            .iter()
            .find_map(|kw| line.strip_prefix(kw))
            .or_else(|| line.strip_prefix("var<").and_then(|l| l.split_once('>').map(|(_, rest)| rest.trim_start())));
        if let Some(rest) = decl {
            let name = rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut out = String::with_capacity(source.len() + source.len() / 8);
    let mut rest = source;
    while let Some(start) = rest.find(|c: char| c.is_alphabetic() || c == '_') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let word = &tail[..len];
        // A digit run before the word belongs to a number literal (`0x1fu`): copied as is.
        let in_number = out.chars().last().is_some_and(|c| c.is_ascii_digit());
        out.push_str(word);
        if !in_number && names.contains(&word) {
            out.push_str(suffix);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// How a kernel binds a buffer from `@binding(2)` on: storage read or written, a uniform (a
/// small input row the kernel reads from the uniform address space), or a read-only
/// `texture_storage_2d<rgba32uint, read>` (texture-backed weights, a KV cache in a texture).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
    Uniform,
    Texture,
    /// A write-only `texture_storage_2d<rgba32uint, write>` (the KV cache in a texture).
    StorageTexture,
}

type PipelineKey = (Kernel, &'static str, Defines);
/// A bind-group layout and the pipeline layout made of it.
type Layouts = Arc<(wgpu::BindGroupLayout, wgpu::PipelineLayout)>;

/// Compiled compute pipelines and the bind-group layouts they use, built on first use.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<Vec<Access>, Layouts>>,
}

impl PipelineCache {
    /// The bind-group layout for a kernel with storage bindings `access` (from `@binding(2)`).
    pub fn layout(&self, device: &wgpu::Device, access: &[Access]) -> Layouts {
        let mut map = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(access) {
            return l.clone();
        }
        let uniform = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let mut entries = vec![uniform(0), uniform(1)];
        for (i, a) in access.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 2,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match a {
                    Access::Texture => wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::ReadOnly,
                        format: wgpu::TextureFormat::Rgba32Uint,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    Access::StorageTexture => wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba32Uint,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    Access::Uniform => wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
                    _ => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            });
        }
        let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
        let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&group)],
            immediate_size: 0,
        });
        let l = Arc::new((group, pipeline));
        map.insert(access.to_vec(), l.clone());
        l
    }

    /// The pipeline of `kernel`'s `entry` built with `defines`, for storage bindings `access`.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: Kernel,
        entry: &'static str,
        defines: &Defines,
        access: &[Access],
    ) -> Result<Arc<wgpu::ComputePipeline>, String> {
        let key = (kernel, entry, defines.clone());
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let source = kernel.source(defines)?;
        let layout = self.layout(device, access);
        let label = format!("{kernel:?}/{entry}");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_branches_and_constants() {
        let src = "a\n#if X\nx{{N}}\n#elif Y\ny\n#else\nz\n#endif\nb";
        let d = Defines::new().flag("Y").constant("N", 7);
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "y", "b"]);
        let d = Defines::new().flag("X").constant("N", 7);
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "x7", "b"]);
        let d = Defines::new();
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "z", "b"]);
    }

    #[test]
    fn preprocess_repeats_for_blocks() {
        let src = "a\n#for i < N\nx{{i}} = y{{i}};\n#if X\nz{{i}}\n#endif\n#endfor\nb";
        let d = Defines::new().constant("N", 3).flag("X");
        assert_eq!(preprocess(src, &d).split_whitespace().collect::<Vec<_>>(), ["a", "x0", "=", "y0;", "z0", "x1", "=", "y1;", "z1", "x2", "=", "y2;", "z2", "b"]);
        assert_eq!(preprocess(src, &Defines::new()).split_whitespace().collect::<Vec<_>>(), ["a", "b"]);
        let src = "#for i < N\nx{{i}}=y{{i/8}}[{{i%8}}]+{{N}}+{{ix}}\n#endfor";
        let d = Defines::new().constant("N", 10);
        let out = preprocess(src, &d);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "x0=y0[0]+10+{{ix}}");
        assert_eq!(lines[9], "x9=y1[1]+10+{{ix}}");
    }

    #[test]
    fn instance_suffixes_top_level_names_only() {
        let src = "struct W8 { a: f32, }\nconst TABLE = 1u;\nfn load8(u: u32) -> W8 { return W8(f32(wq[u] + TABLE + 0x1fu)); }\nfn row(x: u32) -> f32 { return load8(x).a * p.k; }\n";
        let out = instance(src, "_2");
        assert!(out.contains("struct W8_2 { a: f32, }"), "{out}");
        assert!(out.contains("const TABLE_2 = 1u;"), "{out}");
        assert!(out.contains("fn load8_2(u: u32) -> W8_2 { return W8_2(f32(wq_2[u] + TABLE_2 + 0x1fu)); }"), "{out}");
        assert!(out.contains("fn row_2(x: u32) -> f32 { return load8_2(x).a * p.k; }"), "{out}");
    }
}
