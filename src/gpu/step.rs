//! Recording a whole token step into one command encoder and one compute pass.
//!
//! Every kernel takes its parameters from a uniform struct at `@binding(0)` and its storage
//! buffers at `@binding(1..)`, in the order given to [`Step::dispatch`]. Parameters of all
//! dispatches go into one uniform "arena" buffer written once, right before the single submit.

use super::{Context, Defines, GpuError, Kernel};

/// Parameter slots one step may use (each slot is one dispatch's uniform struct).
const ARENA_SLOTS: u64 = 4096;
/// Bytes reserved per parameter slot (the largest WebGPU uniform offset alignment).
const SLOT_BYTES: u64 = 256;

/// One recorded unit of GPU work that is submitted once.
pub struct Step<'a> {
    ctx: &'a Context,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    arena: wgpu::Buffer,
    params: Vec<u8>,
    /// Kernel dispatches recorded so far.
    pub dispatches: u32,
}

impl<'a> Step<'a> {
    pub fn new(ctx: &'a Context) -> Step<'a> {
        let arena = ctx.take_arena(ARENA_SLOTS * SLOT_BYTES);
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        let pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None })
            .forget_lifetime();
        Step { ctx, encoder: Some(encoder), pass: Some(pass), arena, params: Vec::new(), dispatches: 0 }
    }

    pub fn context(&self) -> &'a Context {
        self.ctx
    }

    /// Records one dispatch of `kernel`'s `entry` with uniform `params` and storage `buffers`.
    /// `workgroups` is the total workgroup count; it is folded into 2D when it exceeds the
    /// per-dimension limit (kernels compute `id = wg.x + wg.y * num_workgroups.x`).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        entry: &'static str,
        defines: &Defines,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: u32,
    ) -> Result<(), GpuError> {
        let slot = self.params.len() as u64;
        if slot + SLOT_BYTES > ARENA_SLOTS * SLOT_BYTES {
            return Err(GpuError::Limit(format!("one step records more than {ARENA_SLOTS} dispatches")));
        }
        let bytes = bytemuck::bytes_of(params);
        self.params.extend_from_slice(bytes);
        self.params.resize((slot + SLOT_BYTES) as usize, 0);

        let pipeline = self.ctx.pipelines.get(&self.ctx.device, kernel, entry, defines);
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset: slot,
                size: wgpu::BufferSize::new(bytes.len().next_multiple_of(16) as u64),
            }),
        });
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let (x, y) = fold_workgroups(workgroups, self.ctx.limits.max_workgroups_per_dim);
        let pass = self.pass.as_mut().expect("pass is open until submit");
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        self.dispatches += 1;
        Ok(())
    }

    /// Ends the compute pass, copies `src[..bytes]` into `dst` (a readback buffer) if given, and
    /// submits everything with one `queue.submit`.
    pub fn submit(mut self, copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>) {
        drop(self.pass.take());
        let mut encoder = self.encoder.take().expect("encoder is open until submit");
        if let Some((src, dst, bytes)) = copy {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes.next_multiple_of(4));
        }
        if !self.params.is_empty() {
            self.ctx.queue.write_buffer(&self.arena, 0, &self.params);
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.count_submit();
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        self.pass.take();
        self.ctx.return_arena(self.arena.clone());
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
