// y[t, row_offset + r] (+)= sum_k W[r, k] * x[t, k]  for one row-part of a quantized matrix.
//
// wq: the part's rows, raw GGML blocks, row r starts at byte r * row_bytes   W: [rows, k]
// x:  f32 activations, token t at x[x_offset + t * x_stride ..][0..k]       x: [n_tokens, k]
// y:  f32 outputs, token t at y[t * y_stride + row_offset + r]               y: [n_tokens, N]
// One workgroup per row; its threads stride over 32-element groups; TILE_T tokens per pass so
// each dequantized group is reused across tokens.

struct Params {
    k: u32,
    rows: u32,
    row_offset: u32,
    n_tokens: u32,
    x_offset: u32,
    x_stride: u32,
    y_stride: u32,
    accumulate: u32,
    row_bytes: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 32u;
const TT: u32 = {{TILE_T}}u;

var<workgroup> partial: array<f32, {{TILE_T}} * 32>;

@compute @workgroup_size(32)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let row_byte = r * p.row_bytes;
    let groups = p.k / 32u;
    for (var t0 = 0u; t0 < p.n_tokens; t0 += TT) {
        var acc: array<f32, TT>;
        for (var g = lid; g < groups; g += WG) {
            let w = load32(row_byte, g);
            for (var tt = 0u; tt < TT; tt++) {
                let t = t0 + tt;
                if (t < p.n_tokens) {
                    let xb = p.x_offset + t * p.x_stride + g * 32u;
                    var s = 0.0;
                    for (var i = 0u; i < 32u; i++) {
                        s += w[i] * x[xb + i];
                    }
                    acc[tt] += s;
                }
            }
        }
        for (var tt = 0u; tt < TT; tt++) {
            partial[tt * WG + lid] = acc[tt];
        }
        workgroupBarrier();
        if (lid < TT && t0 + lid < p.n_tokens) {
            var s = 0.0;
            for (var i = 0u; i < WG; i++) {
                s += partial[lid * WG + i];
            }
            let o = (t0 + lid) * p.y_stride + p.row_offset + r;
            if (p.accumulate != 0u) {
                s += y[o];
            }
            y[o] = s;
        }
        workgroupBarrier();
    }
}
