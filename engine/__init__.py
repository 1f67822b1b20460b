"""The inference engine: generators, checkpoints, frames, backends, media I/O and the pipeline."""
