//! Learning-rate schedules by epoch: step decay (`StepLR`) and an arbitrary factor (`LambdaLR`).

/// The learning rate for an epoch, from the base rate.
pub trait Schedule {
    /// The learning rate of epoch `epoch` (from 0) for the base rate `base_lr`.
    fn lr(&self, base_lr: f64, epoch: usize) -> f64;
}

/// lr = base · γ^⌊epoch / step_size⌋, as `torch.optim.lr_scheduler.StepLR`.
#[derive(Clone, Copy, Debug)]
pub struct StepLr {
    /// Epochs between decays.
    pub step_size: usize,
    /// The factor applied at each decay.
    pub gamma: f64,
}

impl Schedule for StepLr {
    fn lr(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// lr = base · f(epoch), as `LambdaLR`.
pub struct LambdaLr<F: Fn(usize) -> f64>(pub F);

impl<F: Fn(usize) -> f64> Schedule for LambdaLr<F> {
    fn lr(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * (self.0)(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_lambda_schedules() {
        let s = StepLr {
            step_size: 2,
            gamma: 0.5,
        };
        let lrs: Vec<f64> = (0..5).map(|e| s.lr(1.0, e)).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
        // Zaremba et al.: constant for 4 epochs, then halved each epoch.
        let z = LambdaLr(|e: usize| 0.5f64.powi(e.saturating_sub(3) as i32));
        assert_eq!(z.lr(1.0, 3), 1.0);
        assert_eq!(z.lr(1.0, 5), 0.25);
    }
}
