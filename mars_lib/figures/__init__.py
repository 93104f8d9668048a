"""Every figure of the notebooks, drawn from the saved result tables alone (no model, no task data).

One function per figure, `fig_<name>(results, cfg=None) -> Figure`, reading only tables under
`results` (`<results>/<nb>/<table>`) and, for settings such as seeds or temperatures, the config the
notebook saved (`<results>/<nb>/config.json`; a notebook passes its own `cfg` instead).

  registry       `@figure(name, *tables)`, `FIGURES` / `TABLES`, `draw(name, cfg)`, `draw_all(results)`
  plotting       one style, the strategies' colours and labels (from the strategy registry), bar/line helpers
  margins        notebooks 01-02: reward gaps, label noise, allocation; paraphrase fidelity, refinement
  rm_training    notebook 03: accuracy, rounds, densities, operators, human tracks, τ sweep, the map, OOD
  curvature      notebook 04: Bradley-Terry curvature by τ and by round
  downstream     notebook 05 (Best-of-N, win rates, DPO) and notebook 01's judges-vs-people figure
  claims_forest  the forest plot of the claims table

Notebooks call `figures.draw(name, cfg)`; `./run_all.sh --figures-only` calls `figures.draw_all`.
"""
from mars_lib.figures import claims_forest, curvature, downstream, margins, rm_training  # noqa: F401  (register)
from mars_lib.figures.registry import FIGURES, TABLES, draw, draw_all  # noqa: F401
from mars_lib.figures.rm_training import task_noise_ceiling  # noqa: F401
