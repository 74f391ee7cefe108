//! Named initial and final states for the built-in layers, so that an LSTM's h and c cannot
//! be swapped unnoticed: `lstm.forward_from(&s, x, LstmState { h, c }, lengths)`, as
//! PyTorch's `lstm(x, (h_0, c_0))`. [`Recurrent::forward`](super::Recurrent::forward) takes the state parts of any cell
//! as a slice, in the order of [`Cell::state_sizes`](super::Cell::state_sizes).

use super::{Gru, Lstm, RecurrentOutput, Rnn};
use crate::session::Session;
use recur_tape::{Element, Var};

/// An LSTM's state: the hidden state `h` `[num_layers·D, B, proj_size or hidden_size]` and the
/// cell state `c` `[num_layers·D, B, hidden_size]`.
#[derive(Clone, Copy, Debug)]
pub struct LstmState<'t, T: Element> {
    /// The hidden state, PyTorch's `h_0` / `h_n`.
    pub h: Var<'t, T>,
    /// The cell state, PyTorch's `c_0` / `c_n`.
    pub c: Var<'t, T>,
}

impl<'t, T: Element> RecurrentOutput<'t, T> {
    /// The final state of an LSTM layer, to start the next batch from (after
    /// [`detach`](Var::detach) for truncated BPTT). Panics for a layer whose state is not
    /// an LSTM's h and c.
    pub fn lstm_state(&self) -> LstmState<'t, T> {
        match self.final_state[..] {
            [h, c] => LstmState { h, c },
            _ => panic!(
                "lstm_state: the layer's final state has {} parts, an LSTM's has 2 (h, c)",
                self.final_state.len()
            ),
        }
    }
}

impl Lstm {
    /// [`forward`](super::Recurrent::forward) from the initial state `initial`.
    ///
    /// ```
    /// use recur_nn::{Lstm, LstmState, Mode, ParamStore, RnnOptions, Session};
    /// use recur_tape::{Tape, Tensor};
    /// use rand::SeedableRng;
    ///
    /// let mut store = ParamStore::<f32>::new();
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let lstm = Lstm::new(&mut store, "rnn", RnnOptions::new(3, 4).num_layers(2), &mut rng);
    /// let tape = Tape::new();
    /// let s = Session::new(&tape, &store, Mode::Train, 0);
    /// let x = tape.constant(Tensor::zeros(&[5, 2, 3])); // [T, B, input]
    /// let h = tape.constant(Tensor::zeros(&[2, 2, 4])); // [layers, B, hidden]
    /// let c = tape.constant(Tensor::ones(&[2, 2, 4]));
    /// let out = lstm.forward_from(&s, x, LstmState { h, c }, None);
    /// let next = out.lstm_state(); // carry it on, detached, to the next batch
    /// assert_eq!(next.c.shape().as_slice(), &[2, 2, 4]);
    /// ```
    pub fn forward_from<'t, T: Element>(
        &self,
        s: &Session<'t, '_, T>,
        x: Var<'t, T>,
        initial: LstmState<'t, T>,
        lengths: Option<&[usize]>,
    ) -> RecurrentOutput<'t, T> {
        self.forward(s, x, Some(&[initial.h, initial.c]), lengths)
    }
}

/// `forward_from` for the layers whose state is h alone.
macro_rules! forward_from_h0 {
    ($($layer:ty),*) => {$(
        impl $layer {
            /// [`forward`](super::Recurrent::forward) from the initial hidden state `h0`
            /// `[num_layers·D, B, hidden_size]`.
            pub fn forward_from<'t, T: Element>(
                &self,
                s: &Session<'t, '_, T>,
                x: Var<'t, T>,
                h0: Var<'t, T>,
                lengths: Option<&[usize]>,
            ) -> RecurrentOutput<'t, T> {
                self.forward(s, x, Some(&[h0]), lengths)
            }
        }
    )*};
}

forward_from_h0!(Gru, Rnn);

#[cfg(test)]
mod tests {
    use super::LstmState;
    use crate::rnn::{Gru, Lstm, RnnOptions};
    use crate::{Mode, ParamStore, Session};
    use rand::SeedableRng;
    use recur_tape::{Tape, Tensor};

    /// `forward_from` with a typed state gives what `forward` with the parts in order gives,
    /// and swapping h and c (same shapes) changes the result: the names carry the order.
    #[test]
    fn typed_states_are_the_parts_in_order() {
        let mut store = ParamStore::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let options = RnnOptions::new(3, 4).num_layers(2);
        let lstm = Lstm::new(&mut store, "lstm", options.clone(), &mut rng);
        let gru = Gru::new(&mut store, "gru", options, &mut rng);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Eval, 0);
        let x = tape.constant(Tensor::uniform(&[5, 2, 3], -1.0, 1.0, &mut rng));
        let h = tape.constant(Tensor::uniform(&[2, 2, 4], -1.0, 1.0, &mut rng));
        let c = tape.constant(Tensor::uniform(&[2, 2, 4], -1.0, 1.0, &mut rng));
        let typed = lstm.forward_from(&s, x, LstmState { h, c }, None);
        let parts = lstm.forward(&s, x, Some(&[h, c]), None);
        let swapped = lstm.forward_from(&s, x, LstmState { h: c, c: h }, None);
        assert_eq!(typed.output.to_tensor(), parts.output.to_tensor());
        assert_eq!(
            typed.lstm_state().c.to_tensor(),
            parts.c_n().unwrap().to_tensor()
        );
        assert_ne!(typed.output.to_tensor(), swapped.output.to_tensor());
        let typed = gru.forward_from(&s, x, h, Some(&[5, 3]));
        let parts = gru.forward(&s, x, Some(&[h]), Some(&[5, 3]));
        assert_eq!(typed.h_n().to_tensor(), parts.h_n().to_tensor());
    }

    #[test]
    #[should_panic(expected = "GRU: proj_size 2 is only supported for LSTM")]
    fn only_an_lstm_takes_a_projection() {
        let mut store = ParamStore::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        Gru::new(
            &mut store,
            "gru",
            RnnOptions::new(3, 4).proj_size(2),
            &mut rng,
        );
    }

    #[test]
    #[should_panic(expected = "lstm_state: the layer's final state has 1 parts")]
    fn a_gru_has_no_lstm_state() {
        let mut store = ParamStore::<f64>::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let gru = Gru::new(&mut store, "gru", RnnOptions::new(3, 4), &mut rng);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Eval, 0);
        let x = tape.constant(Tensor::zeros(&[2, 1, 3]));
        gru.forward(&s, x, None, None).lstm_state();
    }
}
