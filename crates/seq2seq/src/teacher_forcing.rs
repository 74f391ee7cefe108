//! Teacher forcing as a policy consulted at every decoder step: always, never (free running),
//! a fixed ratio per step or per sequence, or scheduled sampling (Bengio et al. 2015) whose
//! ratio decays over training steps linearly, exponentially or by an inverse sigmoid.

use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// How the teacher-forcing ratio εᵢ decays with the training step i (Bengio et al. 2015).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// εᵢ = max(min, k − c·i).
    Linear {
        /// ε at step 0.
        k: f64,
        /// Decrease per step.
        c: f64,
        /// The floor.
        min: f64,
    },
    /// εᵢ = kⁱ, k < 1.
    Exponential {
        /// The base, below 1.
        k: f64,
    },
    /// εᵢ = k / (k + exp(i/k)), k ≥ 1.
    InverseSigmoid {
        /// The steepness, at least 1.
        k: f64,
    },
}

impl Decay {
    /// εᵢ at training step `step`.
    pub fn ratio(&self, step: usize) -> f64 {
        let i = step as f64;
        match *self {
            Decay::Linear { k, c, min } => (k - c * i).max(min),
            Decay::Exponential { k } => k.powf(i),
            Decay::InverseSigmoid { k } => k / (k + (i / k).exp()),
        }
    }
}

/// Whether one draw decides a whole sequence or each step separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// A draw per row and step.
    Step,
    /// A draw per row, for all its steps.
    Sequence,
}

/// When to feed the reference token instead of the model's own prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TeacherForcing {
    /// Always the reference (plain teacher forcing).
    Always,
    /// Free running: the model always reads its own previous prediction.
    Never,
    /// The reference with a fixed probability.
    Ratio {
        /// The probability of the reference.
        ratio: f64,
        /// Per step or per sequence.
        per: Granularity,
    },
    /// Scheduled sampling: the probability decays with the training step.
    Scheduled {
        /// How it decays.
        decay: Decay,
        /// Per step or per sequence.
        per: Granularity,
    },
}

impl TeacherForcing {
    /// The probability of feeding the reference at training step `step`.
    pub fn ratio(&self, step: usize) -> f64 {
        match self {
            TeacherForcing::Always => 1.0,
            TeacherForcing::Never => 0.0,
            TeacherForcing::Ratio { ratio, .. } => *ratio,
            TeacherForcing::Scheduled { decay, .. } => decay.ratio(step),
        }
        .clamp(0.0, 1.0)
    }

    fn granularity(&self) -> Granularity {
        match self {
            TeacherForcing::Ratio { per, .. } | TeacherForcing::Scheduled { per, .. } => *per,
            _ => Granularity::Sequence,
        }
    }

    /// The per-row decisions for one batch at training step `step`.
    pub fn sampler(&self, step: usize, rows: usize) -> ForcingSampler {
        ForcingSampler {
            ratio: self.ratio(step),
            per: self.granularity(),
            sequence: None,
            rows,
        }
    }
}

/// Draws, for one batch, which rows get the reference token at each decoder step.
#[derive(Clone, Debug)]
pub struct ForcingSampler {
    ratio: f64,
    per: Granularity,
    sequence: Option<Vec<bool>>,
    rows: usize,
}

impl ForcingSampler {
    /// Per row: true to feed the reference token at this step.
    pub fn next(&mut self, rng: &mut impl Rng) -> Vec<bool> {
        let (ratio, rows) = (self.ratio, self.rows);
        let mut draw = || {
            (0..rows)
                .map(|_| ratio >= 1.0 || (ratio > 0.0 && rng.gen::<f64>() < ratio))
                .collect::<Vec<_>>()
        };
        match self.per {
            Granularity::Step => draw(),
            Granularity::Sequence => self.sequence.get_or_insert_with(draw).clone(),
        }
    }
}

impl FromStr for TeacherForcing {
    type Err = String;
    /// `always`, `never`, `0.5` (per step), `seq:0.5` (per sequence), `linear:K:C[:MIN]`,
    /// `exp:K`, `sigmoid:K` (scheduled, per step).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("bad teacher forcing {s:?}: expected always, never, 0.5, seq:0.5, linear:K:C[:MIN], exp:K or sigmoid:K")
        };
        let num = |v: &str| v.parse::<f64>().map_err(|_| bad());
        let parts: Vec<&str> = s.split(':').collect();
        let per = Granularity::Step;
        Ok(match parts.as_slice() {
            ["always"] => TeacherForcing::Always,
            ["never"] => TeacherForcing::Never,
            [r] => TeacherForcing::Ratio {
                ratio: num(r)?,
                per,
            },
            ["seq", r] => TeacherForcing::Ratio {
                ratio: num(r)?,
                per: Granularity::Sequence,
            },
            ["linear", k, c] => TeacherForcing::Scheduled {
                decay: Decay::Linear {
                    k: num(k)?,
                    c: num(c)?,
                    min: 0.0,
                },
                per,
            },
            ["linear", k, c, m] => TeacherForcing::Scheduled {
                decay: Decay::Linear {
                    k: num(k)?,
                    c: num(c)?,
                    min: num(m)?,
                },
                per,
            },
            ["exp", k] => TeacherForcing::Scheduled {
                decay: Decay::Exponential { k: num(k)? },
                per,
            },
            ["sigmoid", k] => TeacherForcing::Scheduled {
                decay: Decay::InverseSigmoid { k: num(k)? },
                per,
            },
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for TeacherForcing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeacherForcing::Always => write!(f, "always"),
            TeacherForcing::Never => write!(f, "never"),
            TeacherForcing::Ratio {
                ratio,
                per: Granularity::Step,
            } => write!(f, "{ratio}"),
            TeacherForcing::Ratio {
                ratio,
                per: Granularity::Sequence,
            } => write!(f, "seq:{ratio}"),
            TeacherForcing::Scheduled { decay, .. } => match decay {
                Decay::Linear { k, c, min } => write!(f, "linear:{k}:{c}:{min}"),
                Decay::Exponential { k } => write!(f, "exp:{k}"),
                Decay::InverseSigmoid { k } => write!(f, "sigmoid:{k}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn schedules_follow_bengio_et_al() {
        let lin = Decay::Linear {
            k: 1.0,
            c: 0.1,
            min: 0.2,
        };
        assert_eq!([0, 5, 100].map(|i| lin.ratio(i)), [1.0, 0.5, 0.2]);
        let exp = Decay::Exponential { k: 0.9 };
        approx::assert_relative_eq!(exp.ratio(10), 0.9f64.powi(10));
        let sig = Decay::InverseSigmoid { k: 10.0 };
        approx::assert_relative_eq!(sig.ratio(0), 10.0 / 11.0);
        approx::assert_relative_eq!(sig.ratio(50), 10.0 / (10.0 + 5f64.exp()));
        assert!(sig.ratio(100) < sig.ratio(10));
    }

    #[test]
    fn sampled_fractions_match_the_ratio() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let policy: TeacherForcing = "0.3".parse().unwrap();
        let mut s = policy.sampler(0, 1000);
        let forced: usize = (0..20)
            .map(|_| s.next(&mut rng).iter().filter(|&&b| b).count())
            .sum();
        assert!((forced as f64 / 20_000.0 - 0.3).abs() < 0.02);
        // Per sequence: a row's decision holds for every step of the batch.
        let mut s = "seq:0.5".parse::<TeacherForcing>().unwrap().sampler(0, 64);
        let first = s.next(&mut rng);
        assert!((0..5).all(|_| s.next(&mut rng) == first));
        assert!(TeacherForcing::Always
            .sampler(0, 8)
            .next(&mut rng)
            .iter()
            .all(|&b| b));
        assert!(TeacherForcing::Never
            .sampler(0, 8)
            .next(&mut rng)
            .iter()
            .all(|&b| !b));
        let sched: TeacherForcing = "linear:1:0.01".parse().unwrap();
        approx::assert_relative_eq!(sched.ratio(30), 0.7);
        assert_eq!(sched.to_string(), "linear:1:0.01:0");
    }
}
