// Element-wise ops on f32 vectors. All entries: x (read) at binding 1, y (read_write) at binding 2,
// n elements, x read from x_offset, y written from y_offset.
//   add:    y[i] += x[i % period]           (residual connection with period = n; a bias added to
//                                            every row with period = row length)
//   copy:   y[i]  = x[i]                    (KV cache store: y_offset = pos0 * kv_row)
//   swiglu: y[i]  = silu(y[i]) * x[i]       (y = gate, x = up)
//   geglu:  y[i]  = gelu_tanh(y[i]) * x[i]  (y = gate, x = up)
//   softcap: y[i] = scalar * tanh(y[i] / scalar)   (x unused but bound)

struct Params {
    n: u32,
    x_offset: u32,
    y_offset: u32,
    period: u32,
    scalar: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
        y[p.y_offset + i] += x[p.x_offset + i % p.period];
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
        let inner = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        y[p.y_offset + i] = 0.5 * g * (1.0 + tanh_accurate(inner)) * x[p.x_offset + i];
    }
}

@compute @workgroup_size(256)
fn softcap(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        let c = p.scalar;
        y[p.y_offset + i] = c * tanh_accurate(y[p.y_offset + i] / c);
    } else if (p.n == 0xffffffffu) {
        // Never runs: keeps x in this entry's interface so all entries share one binding layout.
        y[0] = x[0];
    }
}
