// Causal grouped-query attention, part 2 of 2: adds up the slices of attention.wgsl.
// One workgroup per (t, h):  M = max_s m_s,  out[t, h, :] = Σ_s e^(m_s - M) o_s / Σ_s e^(m_s - M) l_s
//   part: [n_tokens, n_heads, splits, head_dim + 2] f32     out: [n_tokens, n_heads, head_dim] f32

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    splits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let th = wid.x + wid.y * nwg.x;
    if (th >= p.n_tokens * p.n_heads) {
        return;
    }
    let d = p.head_dim;
    let stride = d + 2u;
    let base = th * p.splits * stride;
    var m = -1.0e30;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, part[base + s * stride]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        l += exp(part[base + s * stride] - m) * part[base + s * stride + 1u];
    }
    for (var dd = lid; dd < d; dd += 64u) {
        var o = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            o += exp(part[base + s * stride] - m) * part[base + s * stride + 2u + dd];
        }
        out[th * d + dd] = o / l;
    }
}
