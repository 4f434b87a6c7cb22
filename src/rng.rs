//! Seeded randomness shared by the simulator and the drill-down's bootstrap: one standard-normal
//! draw, so both stages agree on it without the drill-down depending on the simulator.

use rand::Rng;

/// A standard normal draw (Box–Muller) from any generator; the same generator state gives the
/// same number.
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
