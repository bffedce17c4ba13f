// Gemma's post-norm and residual add: x[r, :] += y[r, :] / sqrt(mean(y[r, :]^2) + eps) · w
//   y, x: [n_rows, n] f32     w: vecs[w ..][0 .. n]     One workgroup per row.

struct Params {
    n: u32,
    n_rows: u32,
    eps: f32,
    w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> vecs: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn post_norm_add(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.n_rows) {
        return;
    }
    let base = r * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = y[base + i];
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        x[base + i] += y[base + i] * scale * vecs[p.w + i];
    }
}
