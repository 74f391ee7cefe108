//! The input and hidden projections shared by the built-in cells: `weight_ih`, `weight_hh`,
//! `bias_ih`, `bias_hh` (with a layer suffix such as `_l1_reverse`), registered in PyTorch's
//! order and initialised U(±1/√hidden).

use super::fused::FusedSpec;
use super::CellKind;
use crate::init;
use crate::params::{join_name, ParamId, ParamStore};
use crate::session::Session;
use rand::Rng;
use recur_tape::{Element, Var};

#[derive(Clone, Debug)]
pub(crate) struct GateWeights {
    pub w_ih: ParamId,
    pub w_hh: ParamId,
    pub b_ih: Option<ParamId>,
    pub b_hh: Option<ParamId>,
}

/// Where a cell's parameters go and how they are drawn.
pub(crate) struct CellSpec<'a, R> {
    pub prefix: &'a str,
    /// "" for a standalone cell, `_l{k}` or `_l{k}_reverse` inside a layer.
    pub suffix: &'a str,
    pub bias: bool,
    pub rng: &'a mut R,
}

impl GateWeights {
    /// `rows` gate rows over inputs of width `input` and recurrent inputs of width `recurrent`;
    /// the init bound is 1/√hidden.
    pub fn new<T: Element, R: Rng>(
        store: &mut ParamStore<T>,
        spec: &mut CellSpec<'_, R>,
        rows: usize,
        input: usize,
        recurrent: usize,
        hidden: usize,
    ) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        let name = |n: &str| join_name(spec.prefix, &format!("{n}{}", spec.suffix));
        let w_ih = store.add(
            name("weight_ih"),
            init::uniform(&[rows, input], bound, spec.rng),
        );
        let w_hh = store.add(
            name("weight_hh"),
            init::uniform(&[rows, recurrent], bound, spec.rng),
        );
        let (b_ih, b_hh) = if spec.bias {
            let b_ih = store.add(name("bias_ih"), init::uniform(&[rows], bound, spec.rng));
            let b_hh = store.add(name("bias_hh"), init::uniform(&[rows], bound, spec.rng));
            (Some(b_ih), Some(b_hh))
        } else {
            (None, None)
        };
        GateWeights {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
    }

    /// The fused kernel's description of a cell of `kind` with these weights.
    pub fn fused_spec(&self, kind: CellKind, input_size: usize, hidden_size: usize) -> FusedSpec {
        FusedSpec {
            kind,
            input_size,
            hidden_size,
            w_ih: self.w_ih,
            w_hh: self.w_hh,
            b_ih: self.b_ih,
            b_hh: self.b_hh,
        }
    }

    /// W_ih·x + b_ih.
    pub fn input_part<'t, T: Element>(&self, s: &Session<'t, '_, T>, x: Var<'t, T>) -> Var<'t, T> {
        x.linear(s.param(self.w_ih), self.b_ih.map(|b| s.param(b)))
    }

    /// W_hh·h + b_hh.
    pub fn hidden_part<'t, T: Element>(&self, s: &Session<'t, '_, T>, h: Var<'t, T>) -> Var<'t, T> {
        h.linear(s.param(self.w_hh), self.b_hh.map(|b| s.param(b)))
    }
}
