//! PyTorch's default initialisers, drawn from a caller's seeded generator.

use rand::Rng;
use recur_tape::{Element, Tensor};

/// U(−bound, bound): PyTorch's recurrent-layer init with bound = 1/√hidden.
pub fn uniform<T: Element>(shape: &[usize], bound: f64, rng: &mut impl Rng) -> Tensor<T> {
    Tensor::uniform(shape, -bound, bound, rng)
}

/// `kaiming_uniform_(a = √5)` as `nn.Linear` uses it: U(±1/√fan_in).
pub fn linear_weight<T: Element>(fan_out: usize, fan_in: usize, rng: &mut impl Rng) -> Tensor<T> {
    uniform(&[fan_out, fan_in], 1.0 / (fan_in.max(1) as f64).sqrt(), rng)
}

/// N(0, 1) by the Box–Muller transform (`nn.Embedding`'s default).
pub fn normal<T: Element>(shape: &[usize], rng: &mut impl Rng) -> Tensor<T> {
    let n: usize = shape.iter().product();
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        data.push(T::of(r * theta.cos()));
        if data.len() < n {
            data.push(T::of(r * theta.sin()));
        }
    }
    Tensor::from_vec(data, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn normal_has_unit_moments_and_uniform_respects_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let x = normal::<f64>(&[20_000], &mut rng);
        let mean = x.data().iter().sum::<f64>() / 20_000.0;
        let var = x.data().iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 20_000.0;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
        let w = linear_weight::<f32>(10, 25, &mut rng);
        assert!(w.data().iter().all(|v| v.abs() <= 0.2));
        assert!(w.data().iter().any(|v| v.abs() > 0.15));
    }
}
