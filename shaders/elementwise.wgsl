// Element-wise ops on f32 vectors. All entries: x (read) at binding 1, y (read_write) at binding 2,
// n elements, x read from x_offset, y written from y_offset.
//   add:    y[i] += x[i]                    (residual connection)
//   copy:   y[i]  = x[i]                    (KV cache store: y_offset = pos0 * kv_row)
//   swiglu: y[i]  = silu(y[i]) * x[i]       (y = gate, x = up)
//   geglu:  y[i]  = gelu_tanh(y[i]) * x[i]  (y = gate, x = up)

struct Params {
    n: u32,
    x_offset: u32,
    y_offset: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y[p.y_offset + i] += x[p.x_offset + i];
    }
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y[p.y_offset + i] = x[p.x_offset + i];
    }
}

@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let g = y[p.y_offset + i];
        y[p.y_offset + i] = g / (1.0 + exp(-g)) * x[p.x_offset + i];
    }
}

@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let g = y[p.y_offset + i];
        // tanh is clamped: some drivers compute it as a ratio of exponentials that overflows.
        let inner = clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0);
        y[p.y_offset + i] = 0.5 * g * (1.0 + tanh(inner)) * x[p.x_offset + i];
    }
}
