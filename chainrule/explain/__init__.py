"""`cr.explain`: backpropagation that shows its work.

It reads the graph the engine records and the formula strings of the op declarations; the engine
never imports it, and the heavy libraries (SymPy, matplotlib) load only when a function that needs
them is called.

- `paths(output, wrt)`: every path back to wrt, local derivatives as formulas and numbers.
- `graph(output, highlight=wrt)`: the Graphviz drawing; `track_modules(model)` for grouping.
- `steps(output)`: the backward pass one node at a time, as text and as a page to step through.
- `symbolic(output, wrt)`: the same derivative with SymPy, checked against direct differentiation.
- `count_multiplications(output)`: the backward pass's multiplications, against every path
  multiplied out on its own and against forward mode.
- `Trace`: gradient-descent steps (a `train.fit` callback, or fed by hand), table, CSV, JSON, plots.
- `write_report(path, ...)`, `model_report(model, inputs, targets, loss_fn, path)`: HTML reports.
"""

from .counts import Multiplications, count_multiplications
from .graph import INSTALL_HINT, Drawing, ModuleRecord, graph, track_modules
from .paths import Derivation, paths
from .recorded import GraphError
from .report import model_report, write_report
from .steps import Steps, steps
from .symbolic import Symbolic, symbolic
from .trace import Trace, plot_fit, plot_loss

__all__ = [
    "INSTALL_HINT",
    "Derivation",
    "Drawing",
    "GraphError",
    "ModuleRecord",
    "Multiplications",
    "Symbolic",
    "Steps",
    "Trace",
    "count_multiplications",
    "graph",
    "model_report",
    "paths",
    "plot_fit",
    "plot_loss",
    "steps",
    "symbolic",
    "track_modules",
    "write_report",
]
