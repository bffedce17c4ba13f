// Row-wise RMSNorm, as two entry points over the same bindings (one workgroup per row, or with
// THREAD_PER_ROW one thread per row):
//   rms_norm:      out[r, :]  = src[r, :] / sqrt(mean(src[r, :]^2) + eps) · w   (the input norm
//                  of the matrix kernels, computed once per token instead of in each workgroup)
//   post_norm_add: out[r, :] += src[r, :] / sqrt(mean(src[r, :]^2) + eps) · w   (Gemma's
//                  post-norms, with the residual add)
// src: f32, row r at element src_offset + r * n       out: [n_rows, n] f32
// w: vecs[w ..][0 .. n]

struct Params {
    n: u32,
    n_rows: u32,
    eps: f32,
    w: u32,
    src_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> vecs: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

#if THREAD_PER_ROW
// One thread per row, no workgroup memory and no barrier (CPU drivers, whose barriers cost more
// than the sums: 128 rows of 576 took 3.5 ms as workgroups on lavapipe).
const WG: u32 = 64u;

// 1 / rms of src row `base ..`.
fn inverse_rms(lid: u32, base: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < p.n; i++) {
        let v = src[base + i];
        s += v * v;
    }
    return inverseSqrt(s / f32(p.n) + p.eps);
}

// The row the invocation handles; it writes the row's elements first_elem, +STRIDE, ...
fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}
fn first_elem(lid: u32) -> u32 {
    return 0u;
}
const STRIDE: u32 = 1u;
#else
// One workgroup per row.
const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

// 1 / rms of src row `base ..` (all threads get it; all threads call it).
fn inverse_rms(lid: u32, base: u32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = src[base + i];
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
    return inverseSqrt(partial[0] / f32(p.n) + p.eps);
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wid.x + wid.y * nwg.x;
}
fn first_elem(lid: u32) -> u32 {
    return lid;
}
const STRIDE: u32 = WG;
#endif

@compute @workgroup_size(WG)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of(wid, nwg, lid);
    if (r >= p.n_rows) {
        return;
    }
    let base = p.src_offset + r * p.n;
    let scale = inverse_rms(lid, base);
    for (var i = first_elem(lid); i < p.n; i += STRIDE) {
        out[r * p.n + i] = src[base + i] * scale * vecs[p.w + i];
    }
}

@compute @workgroup_size(WG)
fn post_norm_add(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = row_of(wid, nwg, lid);
    if (r >= p.n_rows) {
        return;
    }
    let base = p.src_offset + r * p.n;
    let scale = inverse_rms(lid, base);
    for (var i = first_elem(lid); i < p.n; i += STRIDE) {
        out[r * p.n + i] += src[base + i] * scale * vecs[p.w + i];
    }
}
