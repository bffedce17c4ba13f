// Math helpers shared by several kernels (prepended to their sources).

// tanh without the cancellation of (e^2u - 1) / (e^2u + 1) near 0 that some drivers have.
fn tanh_accurate(u: f32) -> f32 {
    let a = abs(u);
    if (a < 0.125) {
        let u2 = u * u;
        return u * (1.0 + u2 * (-1.0 / 3.0 + u2 * (2.0 / 15.0 + u2 * (-17.0 / 315.0))));
    }
    let e = exp(-2.0 * min(a, 15.0));
    return sign(u) * (1.0 - e) / (1.0 + e);
}
