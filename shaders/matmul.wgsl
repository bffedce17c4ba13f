// y[t, row_offset + r] (+)= sum_k W[first_row + r, k] * x[t, k]   r < rows, for rows of one
// row-part of a quantized matrix.
//
// wq: the part's rows, raw GGML blocks, row i starts at byte i * row_bytes   W: [part rows, k]
// x:  f32 activations, token t at x[x_offset + t * x_stride ..][0..k]       x: [n_tokens, k]
//     (read as vec4: x_offset and x_stride are multiples of 4)
// y:  f32 outputs, token t at y[t * y_stride + row_offset + r]               y: [n_tokens, N]
// A workgroup of 64 threads handles 64 / ROW_THREADS rows; the ROW_THREADS threads of a row
// stride over its 8-weight units and their partial sums are added in workgroup memory. CPU
// drivers (lavapipe, SwiftShader) run fastest with 1 thread per row (no barriers); GPUs with more.
// TILE_T (1, 4 or 8) tokens per pass, so that each dequantized unit is reused across tokens.

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
    first_row: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
const G: u32 = {{ROW_THREADS}}u;
const TT: u32 = {{TILE_T}}u;

var<workgroup> partial: array<vec4<f32>, 64>;
#if TILE8
var<workgroup> partial2: array<vec4<f32>, 64>;
#endif

// Σ of the unit's 8 weights times token t's inputs (x row starting at element xo).
fn dot8(w: W8, xo: u32) -> f32 {
    return dot(w.a, x[(xo + w.ia) >> 2u]) + dot(w.b, x[(xo + w.ib) >> 2u]);
}

// First element of token t's input row (t clamped: extra lanes of a tile redo the last token).
fn x_row(t: u32) -> u32 {
    return p.x_offset + min(t, p.n_tokens - 1u) * p.x_stride;
}

fn store(t: u32, r: u32, value: f32) {
    if (t < p.n_tokens) {
        let o = t * p.y_stride + p.row_offset + r;
        var s = value;
        if (p.accumulate != 0u) {
            s += y[o];
        }
        y[o] = s;
    }
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lid % G;
    let r = (wid.x + wid.y * nwg.x) * (WG / G) + lid / G;
    let valid = r < p.rows;
    let row_byte = (p.first_row + r) * p.row_bytes;
    let units = p.k / 8u;
    for (var t0 = 0u; t0 < p.n_tokens; t0 += TT) {
        let x0 = x_row(t0);
#if TILE4
        let x1 = x_row(t0 + 1u);
        let x2 = x_row(t0 + 2u);
        let x3 = x_row(t0 + 3u);
#endif
#if TILE8
        let x4 = x_row(t0 + 4u);
        let x5 = x_row(t0 + 5u);
        let x6 = x_row(t0 + 6u);
        let x7 = x_row(t0 + 7u);
        var acc2 = vec4<f32>(0.0);
#endif
        var acc = vec4<f32>(0.0);
        if (valid) {
            for (var u = lane; u < units; u += G) {
                let w = load8(row_byte, u);
                acc.x += dot8(w, x0);
#if TILE4
                acc.y += dot8(w, x1);
                acc.z += dot8(w, x2);
                acc.w += dot8(w, x3);
#endif
#if TILE8
                acc2.x += dot8(w, x4);
                acc2.y += dot8(w, x5);
                acc2.z += dot8(w, x6);
                acc2.w += dot8(w, x7);
#endif
            }
        }
#if REDUCE
        partial[lid] = acc;
#if TILE8
        partial2[lid] = acc2;
#endif
        workgroupBarrier();
        for (var stride = G / 2u; stride > 0u; stride >>= 1u) {
            if (lane < stride) {
                partial[lid] += partial[lid + stride];
#if TILE8
                partial2[lid] += partial2[lid + stride];
#endif
            }
            workgroupBarrier();
        }
        acc = partial[lid];
#if TILE8
        acc2 = partial2[lid];
#endif
        workgroupBarrier();
#endif
        if (valid && lane == 0u) {
            store(t0, r, acc.x);
#if TILE4
            store(t0 + 1u, r, acc.y);
            store(t0 + 2u, r, acc.z);
            store(t0 + 3u, r, acc.w);
#endif
#if TILE8
            store(t0 + 4u, r, acc2.x);
            store(t0 + 5u, r, acc2.y);
            store(t0 + 6u, r, acc2.z);
            store(t0 + 7u, r, acc2.w);
#endif
        }
    }
}
