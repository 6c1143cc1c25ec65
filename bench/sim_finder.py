"""Side by side in one process: ``simulate_one`` with lenstronomy's ``LensEquationSolver`` for
the quasar images, and with the grid + Newton finder that replaced it
(``train.lenses.image_positions``), alternating 3 x 100 cutouts: ``python -m bench.sim_finder``.
"""

import time

import numpy as np


def main(reps: int = 3, n: int = 100) -> dict:
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    import train.lenses as lenses
    import train.simulate as sim

    grid = lenses.image_positions  # the lens systems call it from their own module

    def solver(R, kwl, sx, sy, bx, by):
        return LensEquationSolver(R.lens).image_position_from_source(
            sx, sy, kwl, min_distance=R.cfg.pixel_scale / R.cfg.supersample,
            search_window=R.cfg.size * R.cfg.pixel_scale)

    cfg = sim.SimConfig()
    sim.simulate_one(0, 3, cfg)  # warm: the renderer, lenstronomy imports
    rate = {"solver": [], "grid": []}
    try:
        for rep in range(reps):
            for name, finder in (("solver", solver), ("grid", grid)):
                lenses.image_positions = finder
                t0 = time.perf_counter()
                for i in range(rep * n, (rep + 1) * n):
                    sim.simulate_one(i, 3, cfg)
                rate[name].append(n / (time.perf_counter() - t0))
    finally:
        lenses.image_positions = grid
    return {k: round(float(np.median(v)), 1) for k, v in rate.items()}


if __name__ == "__main__":
    print(main(), "cutouts/s, one process")
