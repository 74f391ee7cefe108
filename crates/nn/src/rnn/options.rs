//! `RnnOptions`: what configures a recurrent layer (sizes, stacking, directions, dropout and
//! its variants, checkpointing), with PyTorch's defaults and names.

/// The options every recurrent layer shares, with PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnOptions {
    /// Width of the input x_t.
    pub input_size: usize,
    /// Width of the hidden state h (and of the LSTM's cell state c).
    pub hidden_size: usize,
    /// Layers stacked, each reading the outputs of the one below (default 1).
    pub num_layers: usize,
    /// Whether the cells have biases (default `true`).
    pub bias: bool,
    /// Inputs and outputs are `[B, T, features]` instead of `[T, B, features]`.
    pub batch_first: bool,
    /// LSTM only: project h to this width with `weight_hr_l{k}` (0, the default: none).
    pub proj_size: usize,
    /// Dropout on the outputs of every layer but the last, in training mode.
    pub dropout: f64,
    /// Variational dropout on every layer's input, in training mode: one mask per sequence
    /// and row, the same at every step (Gal & Ghahramani 2016).
    pub input_dropout: f64,
    /// Variational dropout on the recurrent input h_{t−1} (state part 0 as each step reads
    /// it), one mask per sequence and row, in training mode. Runs the layer step by step.
    pub state_dropout: f64,
    /// Zoneout (Krueger et al. 2016): in training each unit of every state part keeps its
    /// previous value with this probability at each step; in evaluation the state is the
    /// expected mix p·old + (1 − p)·new. Runs the layer step by step.
    pub zoneout: f64,
    /// A second direction over the reversed sequence, its outputs beside the first's.
    pub bidirectional: bool,
    /// Checkpointing through time: keep states only every ~√T steps and recompute each
    /// segment in backward (O(√T) activation memory instead of O(T), same gradients).
    pub checkpoint: bool,
    /// Run built-in cells through the fused sequence kernels (default). `false` records every
    /// step's ops on the tape instead: slower, the reference the kernels are tested against.
    pub fused: bool,
}

impl RnnOptions {
    /// PyTorch's defaults for a layer from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        RnnOptions {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            proj_size: 0,
            dropout: 0.0,
            input_dropout: 0.0,
            state_dropout: 0.0,
            zoneout: 0.0,
            bidirectional: false,
            checkpoint: false,
            fused: true,
        }
    }
    /// Sets [`num_layers`](Self::num_layers).
    pub fn num_layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    /// Sets [`bias`](Self::bias).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Sets [`batch_first`](Self::batch_first).
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }
    /// Sets [`proj_size`](Self::proj_size) (LSTM only).
    pub fn proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }
    /// Sets [`dropout`](Self::dropout) between layers.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Variational dropout on the layers' inputs and on the recurrent input h_{t−1}.
    pub fn variational_dropout(mut self, input: f64, state: f64) -> Self {
        self.input_dropout = input;
        self.state_dropout = state;
        self
    }
    /// Sets [`zoneout`](Self::zoneout).
    pub fn zoneout(mut self, p: f64) -> Self {
        self.zoneout = p;
        self
    }
    /// Sets [`bidirectional`](Self::bidirectional).
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }
    /// Sets [`checkpoint`](Self::checkpoint).
    pub fn checkpoint(mut self, checkpoint: bool) -> Self {
        self.checkpoint = checkpoint;
        self
    }
    /// Sets [`fused`](Self::fused).
    pub fn fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }
    /// Width of each direction's output h: `proj_size` if set, else `hidden_size`.
    pub fn output_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
    pub(crate) fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}
