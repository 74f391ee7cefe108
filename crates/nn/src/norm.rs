//! `LayerNorm` and `RmsNorm`: normalisation over the last dimension as `torch.nn.LayerNorm`
//! and `torch.nn.RMSNorm`, with their parameter names (`weight`, `bias`) and initialisation
//! (ones and zeros), on the tape's fused `layer_norm` and `rms_norm` ops.

use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use recur_tape::{Element, Tensor, Var};

/// `torch.nn.LayerNorm(width, eps, elementwise_affine, bias)` over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// The learned scale `[width]` (`{prefix}.weight`), if the layer is affine.
    pub weight: Option<ParamId>,
    /// The learned shift `[width]` (`{prefix}.bias`), if it has one.
    pub bias: Option<ParamId>,
    /// Width of the normalised last dimension.
    pub width: usize,
    /// ε, added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// PyTorch's defaults: ε = 1e-5, `{prefix}.weight` (ones) and `{prefix}.bias` (zeros).
    pub fn new<T: Element>(store: &mut ParamStore<T>, prefix: &str, width: usize) -> Self {
        Self::with_options(store, prefix, width, 1e-5, true, true)
    }

    /// `affine`: learn `weight`; `bias`: learn `bias` as well (only with `affine`).
    pub fn with_options<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        width: usize,
        eps: f64,
        affine: bool,
        bias: bool,
    ) -> Self {
        let weight = affine.then(|| store.add(join_name(prefix, "weight"), Tensor::ones(&[width])));
        let bias =
            (affine && bias).then(|| store.add(join_name(prefix, "bias"), Tensor::zeros(&[width])));
        LayerNorm {
            weight,
            bias,
            width,
            eps,
        }
    }

    /// `x` `[..., width]` normalised over its last dimension.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        x.layer_norm(
            self.weight.map(|w| s.param(w)),
            self.bias.map(|b| s.param(b)),
            self.eps,
        )
    }
}

/// `torch.nn.RMSNorm(width, eps, elementwise_affine)` over the last dimension.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// The learned scale `[width]` (`{prefix}.weight`), if the layer is affine.
    pub weight: Option<ParamId>,
    /// Width of the normalised last dimension.
    pub width: usize,
    /// ε; `None` is PyTorch's default, the element type's machine epsilon.
    pub eps: Option<f64>,
}

impl RmsNorm {
    /// PyTorch's defaults: ε the machine epsilon, `{prefix}.weight` (ones).
    pub fn new<T: Element>(store: &mut ParamStore<T>, prefix: &str, width: usize) -> Self {
        Self::with_options(store, prefix, width, None, true)
    }

    /// ε given (`None`: the machine epsilon); `affine`: learn `weight`.
    pub fn with_options<T: Element>(
        store: &mut ParamStore<T>,
        prefix: &str,
        width: usize,
        eps: Option<f64>,
        affine: bool,
    ) -> Self {
        let weight = affine.then(|| store.add(join_name(prefix, "weight"), Tensor::ones(&[width])));
        RmsNorm { weight, width, eps }
    }

    /// `x` `[..., width]` normalised over its last dimension.
    pub fn forward<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        let eps = self
            .eps
            .unwrap_or_else(|| T::epsilon().to_f64().expect("a float"));
        x.rms_norm(self.weight.map(|w| s.param(w)), eps)
    }
}
