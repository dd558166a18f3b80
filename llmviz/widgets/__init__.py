"""Interactive explorers, each an ipywidgets widget built on :class:`FigureWidget` (design.md §5)."""
from .figure import FigureWidget, figure_png

__all__ = ["FigureWidget", "figure_png"]
