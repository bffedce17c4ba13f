// out[t, :] = scale * W[ids[t] - first_row, :] for the tokens whose id falls in this row-part.
//
// wq_0: the part's rows, raw GGML blocks, row r at byte r * row_bytes     W: [rows, k]
// ids: token ids                                                        ids: [n_tokens]
// out: f32                                                              out: [n_tokens, k]

struct Params {
    k: u32,
    first_row: u32,
    rows: u32,
    n_tokens: u32,
    row_bytes: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if TX0
@group(0) @binding(2) var wq_0: texture_storage_2d<rgba32uint, read>;
#elif V40
@group(0) @binding(2) var<storage, read> wq_0: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> wq_0: array<u32>;
#endif
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.n_tokens) {
        return;
    }
    let id = ids[t];
    if (id < p.first_row || id - p.first_row >= p.rows) {
        return;
    }
    let row_byte = row_start_0(id - p.first_row, p.row_bytes);
    let o = t * p.k;
    for (var u = lid; u < p.k / 8u; u += 64u) {
        let w = load8_0(row_byte, u);
        out[(o + w.ia) >> 2u] = w.a * p.scale;
        out[(o + w.ib) >> 2u] = w.b * p.scale;
    }
}
