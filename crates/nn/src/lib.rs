//! recur-nn: layers, recurrent cells, losses, optimizers and checkpoints on the recur tape.
