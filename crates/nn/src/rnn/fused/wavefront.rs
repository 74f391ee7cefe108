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
    /// The last layer's outputs `[T·B, H]`, chunk by chunk.
    pub outputs: Vec<Vec<T>>,
    /// Per layer, its final state parts `[parts, B, H]`.
    pub finals: Vec<Vec<T>>,
    /// Per layer, what its backward reads.
    pub saved: Vec<Saved<T>>,
    /// The inputs of layers 1.. (at l − 1) as forward's chunks, for the weight gradients.
    pub layer_inputs: Vec<Vec<Vec<T>>>,
}

/// Runs the stack `layers` (`weights[l]` for layer l) forwards over `x` `[T·B, input]`.
pub(super) fn forward<T: Element>(
    layers: &[Dims],
    x: &[T],
    weights: Vec<Weights<'_, T>>,
    threads: usize,
) -> StackForward<T> {
    let chunks = layers[0].chunks(false);
    let stages = layers
        .iter()
        .zip(weights)
        .map(|(dims, w)| (ForwardRun::new(dims, false, w), Vec::new()))
        .collect();
    let (stages, last) = pipeline(
        stages,
        chunks.len(),
        threads,
        |(run, inputs): &mut (ForwardRun<'_, T>, Vec<Vec<T>>), l, k, input: Option<Vec<T>>| {
            let (dims, chunk) = (&layers[l], &chunks[k]);
            let rows = chunk.start * dims.batch..chunk.end * dims.batch;
            let mut out = vec![T::zero(); rows.len() * dims.hidden];
            match input {
                None => run.chunk(
                    chunk,
                    &x[rows.start * dims.input..rows.end * dims.input],
                    &mut out,
                ),
                Some(input) => {
                    run.chunk(chunk, &input, &mut out);
                    inputs.push(input);
                }
            }
            out
        },
    );
    let mut result = StackForward {
        outputs: last,
        finals: Vec::new(),
        saved: Vec::new(),
        layer_inputs: Vec::new(),
    };
    for (l, (run, inputs)) in stages.into_iter().enumerate() {
        let (saved, finals) = run.finish();
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
            BackwardRun::new(dims, false, &forward.saved[l], own, w, g_finals[l])
        })
        .collect();
    let (stages, dx) = pipeline(
        stages,
        count,
        threads,
        |run: &mut BackwardRun<'_, T>, j, k, g: Option<Option<Vec<T>>>| {
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
            let mut dx = (l > 0 || needs_x).then(|| vec![T::zero(); rows.len() * dims.input]);
            run.chunk(chunk, x_chunk, g_chunk, dx.as_deref_mut());
            dx
        },
    );
    let mut grads: Vec<Grads<T>> = stages.into_iter().rev().map(BackwardRun::finish).collect();
    if needs_x {
        // Layer 0's input gradient came back chunk by chunk, last chunk first.
        let mut x_grad = Vec::with_capacity(x.len());
        for chunk in dx.iter().rev().flatten() {
            x_grad.extend_from_slice(chunk);
        }
        grads[0].x = Some(x_grad);
    }
    grads
}

/// Runs `stages` over `chunks` chunks as a wavefront: stage j's chunk k receives what stage
/// j − 1 returned for chunk k (stage 0 receives `None`). Stage j runs on thread j mod
/// `threads`, which takes its chunks in order and, within a chunk, its stages in order, so
/// a stage only ever waits for work that comes before it. Returns the stages and what the
/// last one returned, in chunk order.
fn pipeline<S: Send, M: Send>(
    stages: Vec<S>,
    chunks: usize,
    threads: usize,
    run: impl Fn(&mut S, usize, usize, Option<M>) -> M + Sync,
) -> (Vec<S>, Vec<M>) {
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
        let mut last = Vec::new();
        for k in 0..chunks {
            for stage in &mut own {
                let input = stage
                    .input
                    .as_ref()
                    .map(|rx| rx.recv().expect("the stage before stopped"));
                let result = run(&mut stage.state, stage.index, k, input);
                match &stage.output {
                    Some(tx) => tx.send(result).expect("the next stage stopped"),
                    None => last.push(result),
                }
            }
        }
        (own, last)
    };
    let done = on_threads(workers, work);
    // Only the thread with the last stage has results to return.
    let mut results = Vec::new();
    let mut stages = Vec::with_capacity(count);
    for (own, last) in done {
        results.extend(last);
        stages.extend(own);
    }
    stages.sort_by_key(|s| s.index);
    (stages.into_iter().map(|s| s.state).collect(), results)
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
            let (stages, last) = pipeline(stages, 4, threads, |seen: &mut Vec<usize>, j, k, m| {
                let value = m.unwrap_or(k * 100) + j;
                seen.push(value);
                value
            });
            assert_eq!(last, vec![3, 103, 203, 303], "{threads} threads");
            assert_eq!(stages[1], vec![1, 101, 201, 301]);
        }
    }
}
