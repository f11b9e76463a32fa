"""The application layer: wires the core (`vla_runtime`), the steering stack (`verifiers`) and the simulator
(`sim`) into the `vla` command, evaluation, demo, benchmarks and simulator agents. Nothing below imports it."""
