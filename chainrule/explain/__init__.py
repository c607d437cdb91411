"""`cr.explain`: backpropagation that shows its work.

It reads the graph the engine records and the formula strings of the op declarations; the engine
never imports it, and the heavy libraries (SymPy, Graphviz, matplotlib) load only when a function
that needs them is called.
"""

from .paths import Derivation, paths

__all__ = ["Derivation", "paths"]
