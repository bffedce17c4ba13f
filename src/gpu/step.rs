//! Recording GPU work once and replaying it every token.
//!
//! A [`Step`] records dispatches: each one's pipeline, static uniform parameters and storage
//! buffers. [`Step::finish`] turns the record into a [`Recording`]: one uniform buffer holding
//! the per-step [`StepState`] in its first slot and every dispatch's parameters after it (written
//! once), and one bind group per dispatch, all created then. Running a recording creates
//! nothing: it writes the small state (the position, the penalty settings) into its own buffer,
//! encodes the recorded dispatches into one compute pass and submits once. Each recording owns
//! its state, so models on one device (a draft beside its target, tests in parallel) never
//! see each other's. The model keeps a recording per shape (the decode step, prefill chunks), so
//! a decode step creates no bind group and no pipeline.

use std::sync::Arc;

use super::shader::Access;
use super::variant::MatrixShape;
use super::{Context, Defines, GpuError, Kernel};

/// Bytes reserved per parameter slot (the largest WebGPU uniform offset alignment).
const SLOT_BYTES: u64 = 256;

/// Values that change from step to step, read by kernels from `@binding(1)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepState {
    /// Position of the step's first token.
    pub pos0: u32,
    /// Number of (token id, count) pairs the repetition penalties read.
    pub penalty_pairs: u32,
    /// Repetition penalty (1 = off).
    pub repeat: f32,
    /// Presence penalty.
    pub presence: f32,
    /// Frequency penalty.
    pub frequency: f32,
    pub _pad: [u32; 3],
}

impl StepState {
    /// The state of a step at `pos0` without penalties.
    pub fn at(pos0: u32) -> StepState {
        StepState { pos0, repeat: 1.0, ..Default::default() }
    }
}

/// A buffer (or weight texture) a dispatch binds, and how.
#[derive(Clone, Copy)]
pub enum Bind<'b> {
    /// Read-only storage.
    Read(&'b wgpu::Buffer),
    /// Read-write storage.
    Write(&'b wgpu::Buffer),
    /// `size` bytes from byte `offset` (a multiple of the device's uniform offset alignment) as a
    /// uniform buffer.
    Uniform(&'b wgpu::Buffer, u64, u64),
    /// A read-only `texture_storage_2d<rgba32uint, read>` of weight words (`gpu::weights`,
    /// texture-backed parts) or of a KV cache (`gpu::kv`).
    Texture(&'b wgpu::TextureView),
    /// A `texture_storage_2d<rgba32uint, write>` the kernel writes (a KV cache in a texture).
    StorageTexture(&'b wgpu::TextureView),
}

impl Bind<'_> {
    fn access(&self) -> Access {
        match self {
            Bind::Read(_) => Access::Read,
            Bind::Write(_) => Access::ReadWrite,
            Bind::Uniform(..) => Access::Uniform,
            Bind::Texture(_) => Access::Texture,
            Bind::StorageTexture(_) => Access::StorageTexture,
        }
    }
}

/// An owned [`Bind`]: a buffer with its bound range (None: all of it), or a texture view.
enum Bound {
    Buffer(wgpu::Buffer, Option<(u64, u64)>),
    Texture(wgpu::TextureView),
}

struct PendingDispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    layout: Arc<(wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    params_len: u64,
    /// What is bound from `@binding(2)` on.
    buffers: Vec<Bound>,
    workgroups: (u32, u32),
    /// The matrix shape a matrix-kernel dispatch computes (what the autotuner times).
    shape: Option<MatrixShape>,
    /// What the dispatch computes, for profiles: the matrix shape, else the kernel and entry.
    label: String,
}

/// Dispatches being recorded.
pub struct Step<'a> {
    ctx: &'a Context,
    pending: Vec<PendingDispatch>,
    params: Vec<u8>,
    /// The shape the next dispatch is tagged with (see [`Step::tag_next`]).
    next_shape: Option<MatrixShape>,
    /// State used by [`Step::submit`] (one-shot steps in tests).
    pub state: StepState,
}

impl<'a> Step<'a> {
    pub fn new(ctx: &'a Context) -> Step<'a> {
        // Slot 0 holds the step state.
        Step { ctx, pending: Vec::new(), params: vec![0; SLOT_BYTES as usize], next_shape: None, state: StepState::at(0) }
    }

    pub fn context(&self) -> &'a Context {
        self.ctx
    }

    /// Tags the next dispatch with the matrix shape it computes.
    pub fn tag_next(&mut self, shape: MatrixShape) {
        self.next_shape = Some(shape);
    }

    /// Dispatches recorded so far.
    pub fn dispatches(&self) -> u32 {
        self.pending.len() as u32
    }

    /// Records one dispatch of `kernel`'s `entry` with uniform `params` and storage `buffers`
    /// (at `@binding(2..)`). `workgroups` is the total workgroup count; it is folded into 2D when
    /// it exceeds the per-dimension limit (kernels compute `id = wg.x + wg.y * num_workgroups.x`).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        entry: &'static str,
        defines: &Defines,
        params: &P,
        buffers: &[Bind],
        workgroups: u32,
    ) -> Result<(), GpuError> {
        let access: Vec<Access> = buffers.iter().map(Bind::access).collect();
        let pipeline = self
            .ctx
            .pipelines
            .get(&self.ctx.device, kernel, entry, defines, &access)
            .map_err(GpuError::Shape)?;
        let layout = self.ctx.pipelines.layout(&self.ctx.device, &access);
        let bytes = bytemuck::bytes_of(params);
        self.params.extend_from_slice(bytes);
        self.params.resize(self.params.len().next_multiple_of(SLOT_BYTES as usize), 0);
        self.pending.push(PendingDispatch {
            pipeline,
            layout,
            params_len: bytes.len().next_multiple_of(16) as u64,
            buffers: buffers.iter().map(|b| match b {
                Bind::Read(b) | Bind::Write(b) => Bound::Buffer((*b).clone(), None),
                Bind::Uniform(b, offset, size) => Bound::Buffer((*b).clone(), Some((*offset, *size))),
                Bind::Texture(view) | Bind::StorageTexture(view) => Bound::Texture((*view).clone()),
            }).collect(),
            workgroups: fold_workgroups(workgroups, self.ctx.limits.max_workgroups_per_dim),
            label: match self.next_shape {
                Some(shape) => shape.to_string(),
                None => format!("{kernel:?} {entry}"),
            },
            shape: self.next_shape.take(),
        });
        Ok(())
    }

    /// Creates the parameter buffer and the bind groups: the recording can now run any number
    /// of times.
    pub fn finish(self) -> Recording {
        let ctx = self.ctx;
        let arena = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: self.params.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&arena, 0, &self.params);
        let ops = self
            .pending
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &arena,
                            offset: (i as u64 + 1) * SLOT_BYTES,
                            size: wgpu::BufferSize::new(d.params_len),
                        }),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &arena,
                            offset: 0,
                            size: wgpu::BufferSize::new(std::mem::size_of::<StepState>() as u64),
                        }),
                    },
                ];
                for (j, bound) in d.buffers.iter().enumerate() {
                    let resource = match bound {
                        Bound::Buffer(b, None) => b.as_entire_binding(),
                        Bound::Buffer(b, Some((offset, size))) => wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b, offset: *offset, size: wgpu::BufferSize::new(*size) }),
                        Bound::Texture(view) => wgpu::BindingResource::TextureView(view),
                    };
                    entries.push(wgpu::BindGroupEntry { binding: j as u32 + 2, resource });
                }
                ctx.count_bind_group();
                let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &d.layout.0, entries: &entries });
                RecordedDispatch { pipeline: d.pipeline, bind_group, workgroups: d.workgroups, shape: d.shape, label: d.label }
            })
            .collect();
        Recording { ops, arena }
    }

    /// Finishes and runs the recording once with [`Step::state`], copying `copy` afterwards.
    pub fn submit(self, copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>) -> wgpu::SubmissionIndex {
        let (ctx, state) = (self.ctx, self.state);
        self.finish().run(ctx, &state, copy)
    }
}

struct RecordedDispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
    shape: Option<MatrixShape>,
    label: String,
}

/// Recorded dispatches with their bind groups and parameters, ready to run.
pub struct Recording {
    ops: Vec<RecordedDispatch>,
    /// The step state (slot 0) and every dispatch's parameters.
    arena: wgpu::Buffer,
}

impl Recording {
    /// Dispatches one run makes.
    pub fn dispatches(&self) -> u32 {
        self.ops.len() as u32
    }

    /// The matrix shape each dispatch computes (None for the other kernels), in order.
    pub fn shapes(&self) -> impl Iterator<Item = Option<MatrixShape>> + '_ {
        self.ops.iter().map(|op| op.shape)
    }

    /// What each dispatch computes (see [`PendingDispatch::label`]), in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> + '_ {
        self.ops.iter().map(|op| op.label.as_str())
    }

    /// Runs `count` dispatches in one pass with `state`, taking turns through the dispatches
    /// `ops` (indices into the recording): for timing one kernel shape. Cycling through the
    /// layers' dispatches of a shape makes the repetitions read different weights, as a step
    /// does, instead of one matrix again and again from a cache that holds it.
    pub fn run_cycle(&self, ctx: &Context, state: &StepState, ops: &[usize], count: u32) -> wgpu::SubmissionIndex {
        ctx.queue.write_buffer(&self.arena, 0, bytemuck::bytes_of(state));
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timing") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("timing"), timestamp_writes: None });
            for &i in ops.iter().cycle().take(count as usize) {
                let op = &self.ops[i];
                pass.set_pipeline(&op.pipeline);
                pass.set_bind_group(0, &op.bind_group, &[]);
                pass.dispatch_workgroups(op.workgroups.0, op.workgroups.1, 1);
            }
        }
        ctx.queue.submit([encoder.finish()])
    }

    /// Writes `state`, encodes every dispatch into one compute pass, copies `copy = (src, dst,
    /// bytes)` after it if given, and submits once.
    pub fn run(&self, ctx: &Context, state: &StepState, copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>) -> wgpu::SubmissionIndex {
        self.run_some(ctx, state, copy, |_| true)
    }

    /// [`Recording::run`] with only the dispatches whose label `keep` accepts: what a step costs
    /// without some kernels (profiles; the outputs are then meaningless).
    pub fn run_some(&self, ctx: &Context, state: &StepState, copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>, keep: impl Fn(&str) -> bool) -> wgpu::SubmissionIndex {
        ctx.queue.write_buffer(&self.arena, 0, bytemuck::bytes_of(state));
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            for op in self.ops.iter().filter(|op| keep(&op.label)) {
                pass.set_pipeline(&op.pipeline);
                pass.set_bind_group(0, &op.bind_group, &[]);
                pass.dispatch_workgroups(op.workgroups.0, op.workgroups.1, 1);
            }
        }
        if let Some((src, dst, bytes)) = copy {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes.next_multiple_of(4));
        }
        let index = ctx.queue.submit([encoder.finish()]);
        ctx.count_submit();
        index
    }
}

/// Splits `n` workgroups into (x, y) with x ≤ `max_per_dim`.
pub fn fold_workgroups(n: u32, max_per_dim: u32) -> (u32, u32) {
    if n <= max_per_dim {
        (n.max(1), 1)
    } else {
        let y = n.div_ceil(max_per_dim);
        (n.div_ceil(y), y)
    }
}
