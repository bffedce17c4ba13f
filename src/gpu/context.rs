//! The wgpu adapter/device, the limits we asked for, and helpers to create and read buffers.

use super::variant::{InputPath, KernelChoices, MatrixShape, MatrixVariant};
use super::{GpuError, PipelineCache};

/// The device limits that shape how tensors are laid out and kernels dispatched.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceLimits {
    /// Largest range of one storage-buffer binding in bytes; bigger tensors are split into parts.
    pub max_storage_binding: u64,
    /// Largest single buffer in bytes.
    pub max_buffer_size: u64,
    /// Largest workgroup count in one dispatch dimension.
    pub max_workgroups_per_dim: u32,
    /// Alignment of uniform-buffer binding offsets in bytes.
    pub uniform_align: u32,
    /// Most threads in one workgroup of the one-dimensional shapes our kernels use (the smaller of
    /// the adapter's invocations per workgroup and its workgroup size in x).
    pub max_invocations_per_workgroup: u32,
    /// Workgroup memory one kernel may declare, in bytes.
    pub max_workgroup_storage: u32,
    /// Largest range of one uniform-buffer binding in bytes.
    pub max_uniform_binding: u64,
    /// Largest 2D texture side: the most rows a weight texture may have.
    pub max_texture_rows: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    /// The adapter's smallest subgroup (0 without subgroup support): kernels may shuffle within
    /// groups of up to this many consecutive invocations.
    pub subgroup_min_size: u32,
}

/// Kernel variants chosen for the adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tuning {
    /// Threads that share one matrix row in the matrix kernels (1 on CPU drivers: no barriers;
    /// 16 on GPUs): the default variant's; the autotuner or `Context::force_variant` choose others.
    pub matmul_row_threads: u32,
    /// Slices a decode step's attention splits the cached positions into (on CPU drivers enough
    /// threads for a few workgroups of `attend_rows`; many on GPUs, so that one head fills many
    /// cores).
    pub attention_splits: u32,
    /// Query tokens one prefill attention workgroup handles in turn (GPUs: 1, for parallelism).
    pub attention_q_block: u32,
    /// Attention runs one thread per (token, head, slice) rather than a workgroup (CPU drivers:
    /// a workgroup's 64 threads each recomputed every softmax weight of a key tile between
    /// barriers, 36 % of a lavapipe prefill; see the README's performance notes).
    pub attention_thread_per_row: bool,
    /// Where the decode matrix kernels read their input row by default (the autotuner may choose
    /// otherwise per shape). CPU drivers: a uniform buffer (where the row fits one; else staged
    /// once per workgroup in workgroup memory), which every fresh tuning on lavapipe picked over
    /// the staged row; GPUs: storage.
    pub decode_input: InputPath,
    /// Passes of rows one matvec / ffn_in workgroup makes (CPU drivers: several, so that each
    /// workgroup's set-up — the input norm, the staged row — serves more rows).
    pub rows_per_thread: u32,
    /// Weight rows interleaved in groups of 8 (see `gpu::weights`): meant for CPU drivers, whose
    /// SIMD lanes each compute a row. Off by default: on lavapipe it measured no faster than the
    /// raw layout (LLVM still gathers), see the README's performance notes.
    pub interleave_rows: bool,
    /// Weight matrices live in `rgba32uint` textures rather than storage buffers (CPU drivers:
    /// lavapipe gathers texel fetches about twice as fast as per-lane storage loads; see
    /// `gpu::weights`). Decided when a matrix is allocated.
    pub weights_in_textures: bool,
    /// Q4_1, Q8_0 and Q6_K matrices in textures are stored with their blocks regrouped so that
    /// every read is whole texels: a group's block headers (scales) in one texel, then each
    /// block's quants in whole texels (`gpu::weights`, "packed blocks"). Repacked row by row as
    /// the bytes stream in.
    pub pack_blocks: bool,
    /// Each layer's KV cache lives in an `rgba32uint` texture rather than a storage buffer, read
    /// by the `attend_lanes` attention kernel (CPU drivers, for the same reason as the weights;
    /// see `gpu::kv`), where its shape allows (`AttentionArgs::kv_texture_fits`).
    pub kv_in_textures: bool,
    /// The model normalises a matrix kernel's input once per token in its own small dispatch
    /// (`gpu::ops::rms_norm`) instead of every workgroup of the kernel recomputing the norm
    /// (`matmul::Input::normed`). On every adapter: on a CPU driver the per-workgroup barrier
    /// reductions cost more than the matrix product itself (see the README's performance
    /// notes), and on a GPU thousands of workgroups would each re-read the input row.
    pub separate_input_norm: bool,
    /// ... except in decode, where the matrix kernels normalise their one input row in every
    /// thread when the row and the norm weight are uniforms (`matmul`'s XN_UNIFORM: CPU
    /// drivers, whose uniform loads are scalar), saving a dispatch per matrix kernel — for
    /// kernels of a few thousand rows, not the output head (`model::transformer`).
    pub fuse_decode_norm: bool,
    /// The norm kernels run one thread per row instead of a workgroup (CPU drivers, whose
    /// barriers cost more than the sums; see `shaders/norm.wgsl`).
    pub norm_thread_per_row: bool,
    /// Prefill tiles (several tokens, no input norm folded in) read and dequantize a whole block
    /// of 32 weights at a time and reuse it for every token of the tile, for the types with
    /// such readers (Q4_1, Q5_0, Q8_0; Q4_K and Q5_K from textures or vec4 words; Q6_K packed in
    /// textures; the others read 8 weights at a time). CPU drivers, where each weight read is a
    /// texel fetch costing far more than the products: on lavapipe Q5_0's 8-weight reader made
    /// five fetches per 8 weights against three per 32. Not yet timed on a GPU, so off there.
    pub prefill_block_tiles: bool,
    /// The matrix kernels' lanes share a block's 32 inputs through subgroup broadcasts: each lane
    /// of 8 loads one vec4 of them (`load_x32` in rowdot.wgsl) instead of every lane loading all
    /// 32. CPU drivers with subgroups of at least 8 lanes, one thread per row: lavapipe turns a
    /// load whose address is not a compile-time uniform into a gather of one word per lane — all
    /// of the inputs' loads, since their addresses follow the loop over blocks.
    pub broadcast_inputs: bool,
}

impl Tuning {
    /// The defaults for an adapter whose smallest subgroup is `subgroup_min_size` lanes (0
    /// without subgroups).
    fn for_adapter(info: &wgpu::AdapterInfo, subgroup_min_size: u32) -> Tuning {
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        Tuning { matmul_row_threads: if cpu { 1 } else { 16 }, attention_splits: if cpu { 8 } else { 32 }, attention_q_block: if cpu { 16 } else { 1 }, attention_thread_per_row: cpu, decode_input: if cpu { InputPath::Uniform } else { InputPath::Storage }, rows_per_thread: if cpu { 4 } else { 1 }, interleave_rows: false, weights_in_textures: cpu, pack_blocks: cpu, kv_in_textures: cpu, separate_input_norm: true, norm_thread_per_row: cpu, fuse_decode_norm: cpu, prefill_block_tiles: cpu, broadcast_inputs: cpu && subgroup_min_size >= 8 }
    }
}

/// The GPU: device, queue, limits and the pipeline cache. Create one per process.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: DeviceLimits,
    pub adapter_name: String,
    pub backend: String,
    /// The driver and its version, as the adapter reports them (may be empty in browsers).
    pub driver: String,
    pub tuning: Tuning,
    /// The matrix-kernel variant per shape (autotuned) and a forced one.
    kernel_choices: std::sync::Mutex<KernelChoices>,
    pub(crate) pipelines: PipelineCache,
    /// A small buffer bound where a kernel's optional input is absent.
    placeholder: wgpu::Buffer,
    /// The first validation/out-of-memory error the device reported, if any.
    device_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    submits: std::sync::atomic::AtomicU64,
    bind_groups: std::sync::atomic::AtomicU64,
}

/// Storage buffers one kernel binds at most (weights part, inputs, outputs, KV).
const STORAGE_BUFFERS_NEEDED: u32 = 7;

impl Context {
    /// Finds an adapter and opens a device with the highest limits the adapter offers for the
    /// things we need (storage binding size, buffer size). Errors name what is missing.
    pub async fn new() -> Result<Context, GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        #[cfg(target_arch = "wasm32")]
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::BROWSER_WEBGPU,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let offered = adapter.limits();
        if offered.max_storage_buffers_per_shader_stage < STORAGE_BUFFERS_NEEDED {
            return Err(GpuError::Limit(format!(
                "the adapter allows {} storage buffers per shader stage; ferrolm needs {}",
                offered.max_storage_buffers_per_shader_stage, STORAGE_BUFFERS_NEEDED
            )));
        }
        // Ask for everything the adapter offers: large storage bindings matter for big embeddings.
        let required_limits = offered.clone();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ferrolm"),
                // Subgroup operations where the adapter has them (a matrix-kernel variant uses them).
                required_features: adapter.features() & wgpu::Features::SUBGROUP,
                required_limits: required_limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::NoDevice(e.to_string()))?;
        let device_error: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let slot = device_error.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = slot.lock() {
                // One line (the first is only "Validation Error"; the cause follows), bounded.
                let text: String = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                s.get_or_insert_with(|| text.chars().take(600).collect());
            }
        }));
        let features = adapter.features();
        let subgroup_min_size = if features.contains(wgpu::Features::SUBGROUP) { info.subgroup_min_size } else { 0 };
        let limits = DeviceLimits {
            max_storage_binding: required_limits.max_storage_buffer_binding_size,
            max_buffer_size: required_limits.max_buffer_size,
            max_workgroups_per_dim: required_limits.max_compute_workgroups_per_dimension,
            uniform_align: required_limits.min_uniform_buffer_offset_alignment,
            max_invocations_per_workgroup: required_limits.max_compute_invocations_per_workgroup.min(required_limits.max_compute_workgroup_size_x),
            max_workgroup_storage: required_limits.max_compute_workgroup_storage_size,
            max_uniform_binding: required_limits.max_uniform_buffer_binding_size,
            max_texture_rows: required_limits.max_texture_dimension_2d,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size,
        };
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("placeholder"),
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Context {
            placeholder,
            device,
            queue,
            limits,
            adapter_name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            tuning: Tuning::for_adapter(&info, subgroup_min_size),
            kernel_choices: Default::default(),
            pipelines: PipelineCache::default(),
            device_error,
            submits: Default::default(),
            bind_groups: Default::default(),
        })
    }

    /// Errors if the device has reported an error (a bug or out of memory): results are not valid.
    pub fn check_device_error(&self) -> Result<(), GpuError> {
        match self.device_error.lock().ok().and_then(|s| s.clone()) {
            Some(e) => Err(GpuError::Device(format!("the GPU reported an error: {e}"))),
            None => Ok(()),
        }
    }

    /// A small storage buffer to bind where an optional kernel input is absent.
    pub fn placeholder(&self) -> &wgpu::Buffer {
        &self.placeholder
    }

    /// What kernel choices are cached under: the adapter, its driver, this ferrolm version and a
    /// hash of the kernels' sources (a new driver, release or kernel tunes again).
    pub fn adapter_key(&self) -> String {
        format!("{} | {} | {} | ferrolm {} | kernels {}", self.adapter_name, self.backend, self.driver, env!("CARGO_PKG_VERSION"), super::shader::shader_fingerprint())
    }

    /// Waits until the GPU has finished all submitted work.
    pub async fn wait_idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Device(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        {
            let (sender, receiver) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                let _ = sender.send(());
            });
            receiver.await.map_err(|_| GpuError::Device("the GPU queue was dropped".into()))?;
        }
        self.check_device_error()
    }

    /// Runs every matrix kernel with `variant` where it applies (None: the chosen ones again).
    pub fn force_variant(&self, variant: Option<MatrixVariant>) {
        self.choices().forced = variant;
    }

    /// Records `variant` as the one to run `shape` with.
    pub fn choose_variant(&self, shape: MatrixShape, variant: MatrixVariant) {
        self.choices().chosen.insert(shape, variant);
    }

    /// The variants chosen so far (and the forced one).
    pub fn kernel_choices(&self) -> KernelChoices {
        self.choices().clone()
    }

    fn choices(&self) -> std::sync::MutexGuard<'_, KernelChoices> {
        self.kernel_choices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variant that runs `shape`: the forced one, else the chosen one, else (for a token
    /// tile that was not tuned, such as the 4- and 8-token tiles of speculative decoding's verify
    /// steps) the one chosen for the same matrix at the nearest tuned tile of several tokens,
    /// else the adapter's default. The matrix kernels fall back to another input path where this
    /// one cannot hold the input (see `matmul`).
    pub fn matrix_variant(&self, shape: &MatrixShape) -> MatrixVariant {
        let choices = self.choices();
        let nearest_tuned_tile = || {
            if shape.tokens == 1 {
                return None;
            }
            let same_matrix = |s: &MatrixShape| s.tokens > 1 && MatrixShape { tokens: shape.tokens, ..*s } == *shape;
            choices.chosen.iter().filter(|(s, _)| same_matrix(s)).min_by_key(|(s, _)| s.tokens.abs_diff(shape.tokens)).map(|(_, v)| *v)
        };
        choices
            .forced
            .or_else(|| choices.chosen.get(shape).copied())
            .or_else(nearest_tuned_tile)
            .unwrap_or_else(|| self.default_variant(shape.tokens))
    }

    /// The adapter's default variant for a token tile of `tokens` (see [`Tuning`]).
    pub fn default_variant(&self, tokens: u32) -> MatrixVariant {
        let t = &self.tuning;
        let input = if tokens == 1 { t.decode_input } else { InputPath::Storage };
        MatrixVariant { row_threads: t.matmul_row_threads, rows_per_thread: t.rows_per_thread, input, subgroup: false }
    }

    pub(crate) fn count_bind_group(&self) {
        self.bind_groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bind groups created so far (all of them at load or when a new step shape is recorded).
    pub fn bind_group_count(&self) -> u64 {
        self.bind_groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_submit(&self) {
        self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Queue submissions made through [`super::Step`] so far.
    pub fn submit_count(&self) -> u64 {
        self.submits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A zero-initialised f32/u32 storage buffer of `bytes` bytes (rounded up to 4).
    pub fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let size = bytes.max(4).next_multiple_of(4);
        if size > self.limits.max_storage_binding {
            return Err(GpuError::Limit(format!(
                "buffer '{label}' needs {size} bytes but the device binds at most {} bytes",
                self.limits.max_storage_binding
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            // UNIFORM too: a matrix kernel may bind a small input row as a uniform buffer.
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data`.
    pub fn upload_f32(&self, label: &str, data: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        let buf = self.storage_buffer(label, (data.len() * 4) as u64)?;
        self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        Ok(buf)
    }

    /// A storage buffer holding `data`.
    pub fn upload_u32(&self, label: &str, data: &[u32]) -> Result<wgpu::Buffer, GpuError> {
        let buf = self.storage_buffer(label, (data.len() * 4) as u64)?;
        self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        Ok(buf)
    }

    /// A mappable buffer to copy results into for reading back.
    pub fn readback_buffer(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Waits for the GPU and returns the first `bytes` bytes of a MAP_READ buffer.
    pub async fn read_mapped(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        self.read_mapped_after(buffer, bytes, None).await
    }

    /// [`Context::read_mapped`] that natively waits only for submission `after` (and those before
    /// it), so that work submitted later keeps the GPU busy meanwhile.
    pub async fn read_mapped_after(&self, buffer: &wgpu::Buffer, bytes: u64, after: Option<wgpu::SubmissionIndex>) -> Result<Vec<u8>, GpuError> {
        let slice = buffer.slice(0..bytes.max(4).next_multiple_of(4));
        let (sender, receiver) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(target_arch = "wasm32")]
        let _ = after;
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait { submission_index: after, timeout: None })
            .map_err(|e| GpuError::Device(e.to_string()))?;
        receiver
            .await
            .map_err(|_| GpuError::Device("the buffer mapping was cancelled".into()))?
            .map_err(|e| GpuError::Device(format!("reading back from the GPU failed: {e}")))?;
        self.check_device_error()?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Device(format!("mapping the readback buffer failed: {e}")))?[..bytes as usize]
            .to_vec();
        buffer.unmap();
        Ok(data)
    }

    /// Copies `bytes` bytes of a storage buffer to the CPU (tests and full-logit reads).
    pub async fn read_buffer(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        let staging = self.readback_buffer("readback", bytes);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes.next_multiple_of(4));
        self.queue.submit([encoder.finish()]);
        self.read_mapped(&staging, bytes).await
    }

    /// Measures this adapter's memory speed in GB/s (1e9 bytes/s) with copies of `bytes` bytes
    /// between two fresh buffers, twice: by the copy command (`copy_buffer_to_buffer`) and by a
    /// compute shader that copies `vec4<u32>` words (`COPY_SHADER`; some drivers run the copy
    /// command on a slower path: 0.84 TB/s against the shader's 3.5 on an H200). Each counts the
    /// bytes read and the bytes written (a copy of B bytes moves 2·B through memory, as CUDA's
    /// bandwidth tests count). `bench` compares decoding against the faster: a decode step can
    /// read its weights no faster. One copy on a fast GPU takes less time than a submit and a
    /// blocking wait, so each timed submit holds as many copies as make it last about
    /// `COPY_BENCH_SECONDS` (from a first estimate, at most `MAX_COPIES_PER_SUBMIT`); best of
    /// `runs` (one when a single copy takes longer). Native only; allocates 2 × `bytes` for a moment.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn copy_bandwidth(&self, bytes: u64, runs: u32) -> Result<CopyBandwidth, GpuError> {
        const COPY_BENCH_SECONDS: f64 = 0.05;
        const MAX_COPIES_PER_SUBMIT: u32 = 256;
        const COPY_WORKGROUPS: u32 = 4096;
        let bytes = bytes.min(self.limits.max_buffer_size).min(self.limits.max_storage_binding) / 16 * 16;
        if bytes < 32 {
            return Err(GpuError::Limit(format!("a copy of {bytes} bytes cannot measure the memory speed")));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let make = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let (src, dst) = (make("copy source"), make("copy destination"));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Limit(format!("two copy buffers of {bytes} bytes do not fit: {e}")));
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("copy"), source: wgpu::ShaderSource::Wgsl(COPY_SHADER.into()) });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("copy"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("copy"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
            ],
        });
        // Seconds per copy, by the command (`by_shader` false) or the shader.
        let measure = |by_shader: bool| -> Result<f64, GpuError> {
            let timed_copies = |copies: u32| -> Result<f64, GpuError> {
                let start = std::time::Instant::now();
                let mut encoder = self.device.create_command_encoder(&Default::default());
                for _ in 0..copies {
                    if by_shader {
                        let mut pass = encoder.begin_compute_pass(&Default::default());
                        pass.set_pipeline(&pipeline);
                        pass.set_bind_group(0, &bind_group, &[]);
                        pass.dispatch_workgroups(COPY_WORKGROUPS, 1, 1);
                    } else {
                        encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
                    }
                }
                self.queue.submit([encoder.finish()]);
                pollster::block_on(self.wait_idle())?;
                Ok(start.elapsed().as_secs_f64())
            };
            timed_copies(1)?; // first touch of the memory
            let one = timed_copies(1)?;
            let copies = ((COPY_BENCH_SECONDS / one.max(1e-9)).ceil() as u32).clamp(1, MAX_COPIES_PER_SUBMIT);
            // A copy slower than a timed submit should be (a CPU driver's shader copy: 0.3 s on
            // lavapipe) is timed once more, not `runs` times.
            let runs = if one > COPY_BENCH_SECONDS { 1 } else { runs.max(1) };
            let mut best = one;
            for _ in 0..runs {
                best = best.min(timed_copies(copies)? / copies as f64);
            }
            Ok(best)
        };
        let gb_per_s = |seconds: f64| 2.0 * bytes as f64 / seconds / 1e9;
        // Marks at both ends of the source, checked in the destination after the shader's copies
        // (cleared before them): a shader that skipped words would report a speed it never had.
        let marks: [u8; 16] = std::array::from_fn(|i| 0xa5 ^ i as u8);
        self.queue.write_buffer(&src, 0, &marks);
        self.queue.write_buffer(&src, bytes - 16, &marks);
        let command_gb_per_s = gb_per_s(measure(false)?);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&dst, 0, None);
        self.queue.submit([encoder.finish()]);
        let shader_gb_per_s = gb_per_s(measure(true)?);
        let staging = self.readback_buffer("copy check", 32);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&dst, 0, &staging, 0, 16);
        encoder.copy_buffer_to_buffer(&dst, bytes - 16, &staging, 16, 16);
        self.queue.submit([encoder.finish()]);
        let copied = pollster::block_on(self.read_mapped(&staging, 32))?;
        if copied[..16] != marks || copied[16..] != marks {
            return Err(GpuError::Device("the copy shader of the bandwidth measurement left its destination unwritten".into()));
        }
        Ok(CopyBandwidth { command_gb_per_s, shader_gb_per_s })
    }

    /// Reads `n` f32 values from the start of a storage buffer.
    pub async fn read_f32(&self, buffer: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_buffer(buffer, (n * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// A device's measured copy speeds in GB/s, counting bytes read and written
/// ([`Context::copy_bandwidth`]).
#[derive(Clone, Copy, Debug)]
pub struct CopyBandwidth {
    /// By the copy command (`copy_buffer_to_buffer`).
    pub command_gb_per_s: f64,
    /// By a compute shader copying `vec4<u32>` words.
    pub shader_gb_per_s: f64,
}

impl CopyBandwidth {
    /// The faster of the two: the memory speed a kernel can reach.
    pub fn best_gb_per_s(&self) -> f64 {
        self.command_gb_per_s.max(self.shader_gb_per_s)
    }
}

/// `src` to `dst` (the same length, whole `vec4<u32>` words) by every thread of the grid in turn,
/// neighbouring threads on neighbouring words.
#[cfg(not(target_arch = "wasm32"))]
const COPY_SHADER: &str = "
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = arrayLength(&dst);
    for (var i = gid.x; i < n; i += nwg.x * 256u) {
        dst[i] = src[i];
    }
}
";
