"""PyBullet simulator: arms, tasks, experts, data collection, the evaluation runner."""

from sim.quiet import c_stdout_silenced

with c_stdout_silenced():
    import pybullet  # noqa: F401  (imported here once, so its build banner never reaches stdout)
