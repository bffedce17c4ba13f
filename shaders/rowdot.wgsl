// One row of a quantized matrix times the activations; instanced per matrix with the block
// readers in front of it (see gpu/shader.rs: `row_dot` becomes `row_dot_0`, `row_dot_1`, ...).

// Σ of the unit's 8 weights times the inputs of the x row starting at element xo.
fn dot8(w: W8, xo: u32) -> f32 {
#if STAGE_X
    return dot(w.a, xs[w.ia >> 2u]) + dot(w.b, xs[w.ib >> 2u]);
#else
    return dot(w.a, x[(xo + w.ia) >> 2u]) + dot(w.b, x[(xo + w.ib) >> 2u]);
#endif
}

// This lane's share of Σ_k W[row, k] · n[k] · x[t, k] for the TT tokens t = t0 .. (n: the input
// norm weight with NORM, else 1); rows are `row_bytes` long. Lanes stride by G units.
fn row_dot(row: u32, row_bytes: u32, lane: u32, t0: u32) -> Acc {
    let row_byte = row_start(row, row_bytes);
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
#endif
#if TILE16
    let x8 = x_row(t0 + 8u);
    let x9 = x_row(t0 + 9u);
    let x10 = x_row(t0 + 10u);
    let x11 = x_row(t0 + 11u);
    let x12 = x_row(t0 + 12u);
    let x13 = x_row(t0 + 13u);
    let x14 = x_row(t0 + 14u);
    let x15 = x_row(t0 + 15u);
#endif
    var acc = acc_zero();
    for (var u = lane; u < p.k / 8u; u += G) {
        var w = load8(row_byte, u);
#if STAGE_X
#elif NORM
        w.a *= vecs[(p.norm + w.ia) >> 2u];
        w.b *= vecs[(p.norm + w.ib) >> 2u];
#endif
        acc.a.x += dot8(w, x0);
#if TILE4
        acc.a.y += dot8(w, x1);
        acc.a.z += dot8(w, x2);
        acc.a.w += dot8(w, x3);
#endif
#if TILE8
        acc.b.x += dot8(w, x4);
        acc.b.y += dot8(w, x5);
        acc.b.z += dot8(w, x6);
        acc.b.w += dot8(w, x7);
#endif
#if TILE16
        acc.c.x += dot8(w, x8);
        acc.c.y += dot8(w, x9);
        acc.c.z += dot8(w, x10);
        acc.c.w += dot8(w, x11);
        acc.d.x += dot8(w, x12);
        acc.d.y += dot8(w, x13);
        acc.d.z += dot8(w, x14);
        acc.d.w += dot8(w, x15);
#endif
    }
    return acc;
}
