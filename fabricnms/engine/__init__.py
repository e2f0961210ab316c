"""Engine: training, evaluation, tiled inference, checkpoints, output writers."""
