//! A unidirectional stack of fused layers as a wavefront: layer l works on chunk k of the
//! sequence while layer l+1 works on chunk k−1 (and the other way round in backward), the
//! layers spread over the threads [`parallel::set_threads`](crate::parallel::set_threads)
//! allows. A chunk's result goes to the next layer through a channel; what is computed for a
//! chunk does not depend on where it ran, so results are bit-identical for any thread count.

use super::direction::{BackwardRun, Dims, ForwardRun, Grads, Outputs, Saved, Weights};
use crate::parallel::on_threads;
use recur_tape::Element;
use std::sync::mpsc::{channel, Receiver, Sender};

/// What the forward pass of a stack produces and keeps.
pub(super) struct StackForward<T> {
    /// The last layer's outputs `[T·B, H]`, written there chunk by chunk.
    pub outputs: Vec<T>,
    /// Per layer, its final state parts `[parts, B, H]`.
    pub finals: Vec<Vec<T>>,
    /// Per layer, what its backward reads.
    pub saved: Vec<Saved<T>>,
    /// The inputs of layers 1.. (at l − 1) as forward's chunks, for the weight gradients.
    pub layer_inputs: Vec<Vec<Vec<T>>>,
}

/// A forward stage: the layer's run, the inputs it received (kept for backward), and for
/// the last layer the stack's outputs, which it writes in place.
type ForwardStage<'a, T> = (ForwardRun<'a, T>, Vec<Vec<T>>, Vec<T>);

/// Runs the stack `layers` (`weights[l]` for layer l) forwards over `x` `[T·B, input]`.
/// `keep`: whether to save what backward reads (the layers' activations and inputs).
pub(super) fn forward<T: Element>(
    layers: &[Dims],
    x: &[T],
    weights: Vec<Weights<'_, T>>,
    threads: usize,
    keep: bool,
) -> StackForward<T> {
    let chunks = layers[0].chunks(false);
    let top = layers.len() - 1;
    let stages = layers
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(l, (dims, w))| {
            let mut outputs = Vec::new();
            if l == top {
                outputs.resize(dims.steps * dims.batch * dims.hidden, T::zero());
            }
            (ForwardRun::new(dims, false, w, keep), Vec::new(), outputs)
        })
        .collect();
    // Each layer but the last hands its chunk's outputs to the next; the last has written
    // them into its own buffer and hands on nothing.
    let stages = pipeline(
        stages,
        chunks.len(),
        threads,
        |(run, inputs, outputs): &mut ForwardStage<'_, T>, l, k, input: Option<Vec<T>>| {
            let (dims, chunk) = (&layers[l], &chunks[k]);
            let rows = chunk.start * dims.batch..chunk.end * dims.batch;
            let mut own = Vec::new();
            let out = if l == top {
                &mut outputs[rows.start * dims.hidden..rows.end * dims.hidden]
            } else {
                own.resize(rows.len() * dims.hidden, T::zero());
                &mut own[..]
            };
            match input {
                None => run.chunk(
                    chunk,
                    &x[rows.start * dims.input..rows.end * dims.input],
                    out,
                ),
                Some(input) => {
                    run.chunk(chunk, &input, out);
                    if keep {
                        inputs.push(input);
                    }
                }
            }
            own
        },
    );
    let mut result = StackForward {
        outputs: Vec::new(),
        finals: Vec::new(),
        saved: Vec::new(),
        layer_inputs: Vec::new(),
    };
    for (l, (run, inputs, outputs)) in stages.into_iter().enumerate() {
        let (saved, finals) = run.finish();
        if l == top {
            result.outputs = outputs;
        }
        result.saved.push(saved);
        result.finals.push(finals);
        if l > 0 {
            result.layer_inputs.push(inputs);
        }
    }
    result
}

/// Runs the stack backwards from ∂/∂(last layer's outputs) `g_out` and each layer's
/// ∂/∂final state `g_finals[l]`; `outputs` begins with the last layer's outputs. Returns each
/// layer's gradients; ∂/∂x (in layer 0's, when `needs_x`) is the only input gradient.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Element>(
    layers: &[Dims],
    forward: &StackForward<T>,
    outputs: &[T],
    x: &[T],
    weights: Vec<Weights<'_, T>>,
    g_out: &[T],
    g_finals: &[&[T]],
    needs_x: bool,
    threads: usize,
) -> Vec<Grads<T>> {
    let top = layers.len() - 1;
    let chunks = layers[0].chunks(false);
    let count = chunks.len();
    // Stage j is layer top − j; its chunk k is forward's chunk count − 1 − k.
    let stages = weights
        .into_iter()
        .enumerate()
        .rev()
        .map(|(l, w)| {
            let dims = &layers[l];
            // Layer l's outputs are layer l + 1's inputs, or the op's for the last layer.
            let own = match forward.layer_inputs.get(l) {
                Some(chunks) => Outputs::Chunks {
                    chunks,
                    rows: dims.chunk_steps * dims.batch,
                },
                None => Outputs::Rows {
                    data: outputs,
                    stride: dims.hidden,
                    offset: 0,
                },
            };
            let run = BackwardRun::new(dims, false, &forward.saved[l], own, w, g_finals[l]);
            // Layer 0 writes ∂/∂x into one buffer in place.
            let x_grad = (l == 0 && needs_x).then(|| vec![T::zero(); x.len()]);
            (run, x_grad)
        })
        .collect();
    // Each layer above the first hands ∂/∂(its input chunk) to the layer below.
    let stages = pipeline(
        stages,
        count,
        threads,
        |(run, x_grad): &mut BackwardStage<'_, T>, j, k, g: Option<Option<Vec<T>>>| {
            let (l, c) = (top - j, count - 1 - k);
            let (dims, chunk) = (&layers[l], &chunks[c]);
            let rows = chunk.start * dims.batch..chunk.end * dims.batch;
            let x_chunk = match l {
                0 => &x[rows.start * dims.input..rows.end * dims.input],
                _ => &forward.layer_inputs[l - 1][c][..],
            };
            let from_above =
                g.map(|g| g.expect("layers above the first pass their input gradient"));
            let g_chunk = match &from_above {
                Some(g) => &g[..],
                None => &g_out[rows.start * dims.hidden..rows.end * dims.hidden],
            };
            let x_rows = rows.start * dims.input..rows.end * dims.input;
            match x_grad {
                Some(x_grad) => {
                    run.chunk(chunk, x_chunk, g_chunk, Some(&mut x_grad[x_rows]));
                    None
                }
                None if l > 0 => {
                    let mut dx = vec![T::zero(); x_rows.len()];
                    run.chunk(chunk, x_chunk, g_chunk, Some(&mut dx));
                    Some(dx)
                }
                None => {
                    run.chunk(chunk, x_chunk, g_chunk, None);
                    None
                }
            }
        },
    );
    stages
        .into_iter()
        .rev()
        .map(|(run, x_grad)| Grads {
            x: x_grad,
            ..run.finish()
        })
        .collect()
}

/// A backward stage: the layer's run and, for layer 0 when asked for, ∂/∂x `[T·B, input]`.
type BackwardStage<'a, T> = (BackwardRun<'a, T>, Option<Vec<T>>);

/// Runs `stages` over `chunks` chunks as a wavefront: stage j's chunk k receives what stage
/// j − 1 returned for chunk k (stage 0 receives `None`). Stage j runs on thread j mod
/// `threads`, which takes its chunks in order and, within a chunk, its stages in order, so
/// a stage only ever waits for work that comes before it; what the last stage returns is
/// dropped (it keeps what it makes in its state). Returns the stages.
fn pipeline<S: Send, M: Send>(
    stages: Vec<S>,
    chunks: usize,
    threads: usize,
    run: impl Fn(&mut S, usize, usize, Option<M>) -> M + Sync,
) -> Vec<S> {
    let count = stages.len();
    let threads = threads.clamp(1, count.max(1));
    let mut workers: Vec<Vec<Stage<S, M>>> = (0..threads).map(|_| Vec::new()).collect();
    // A channel carries each stage's results to the next.
    let mut input = None;
    for (j, state) in stages.into_iter().enumerate() {
        let (output, next_input) = if j + 1 < count {
            let (tx, rx) = channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        workers[j % threads].push(Stage {
            index: j,
            state,
            input: std::mem::replace(&mut input, next_input),
            output,
        });
    }
    let work = |mut own: Vec<Stage<S, M>>| {
        for k in 0..chunks {
            for stage in &mut own {
                let input = stage
                    .input
                    .as_ref()
                    .map(|rx| rx.recv().expect("the stage before stopped"));
                let result = run(&mut stage.state, stage.index, k, input);
                if let Some(tx) = &stage.output {
                    tx.send(result).expect("the next stage stopped");
                }
            }
        }
        own
    };
    let mut stages: Vec<Stage<S, M>> = on_threads(workers, work).into_iter().flatten().collect();
    stages.sort_by_key(|s| s.index);
    stages.into_iter().map(|s| s.state).collect()
}

/// A stage of the pipeline with its place in it.
struct Stage<S, M> {
    index: usize,
    state: S,
    input: Option<Receiver<M>>,
    output: Option<Sender<M>>,
}

#[cfg(test)]
mod tests {
    use super::pipeline;

    #[test]
    fn each_stage_sees_the_previous_stages_result_for_the_same_chunk() {
        for threads in 1..4 {
            let stages = vec![Vec::new(); 3];
            let stages = pipeline(stages, 4, threads, |seen: &mut Vec<usize>, j, k, m| {
                let value = m.unwrap_or(k * 100) + j;
                seen.push(value);
                value
            });
            assert_eq!(stages[0], vec![0, 100, 200, 300], "{threads} threads");
            assert_eq!(stages[1], vec![1, 101, 201, 301]);
            assert_eq!(stages[2], vec![3, 103, 203, 303]);
        }
    }
}
