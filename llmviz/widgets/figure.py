"""The one widget pattern of the series (design.md §5): core controls + an Image fed with PNGs of one
persistent matplotlib Figure.

* The drawing is a pure function ``draw(fig, **values)`` of the control values: testable without a browser.
* Updates travel as comm messages only (no Output widget), so notebooks pass nbval without tags.
* The display bundle also carries the PNG, so GitHub, nbviewer and static sites show the figure.
* Only core widgets: works with ipywidgets 7.7 (Colab) and 8, JupyterLab, VS Code and Voila.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib as mpl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

IPYWIDGETS_7 = widgets.__version__.startswith("7.")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes. Text is most of a redraw's cost: unhinted glyphs render about a quarter faster
    and look the same at these sizes; a fast zlib level keeps the encoding cheap."""
    buf = io.BytesIO()
    with mpl.rc_context({"text.hinting": "no_hinting"}):
        fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def kept_view(fig: Figure, key: str, view: str, build: Callable[[Figure], list]) -> list:
    """The Axes of ``view``, made once by ``build(fig)`` and kept on the figure under ``key``: switching views
    takes the shown Axes off the figure and puts the chosen view's back (building Axes costs more than drawing
    them). A fresh figure, or one cleared by someone else, starts over. For ``FigureWidget(keep=True)`` draws."""
    state = fig.__dict__.get(key)
    if state is None or fig.axes != state["shown"]:
        fig.clear()
        state = {"shown": [], "views": {}}
        setattr(fig, key, state)
    axes = state["views"].get(view)
    if axes is not state["shown"]:
        for ax in state["shown"]:
            fig.delaxes(ax)
        if axes is None:
            axes = state["views"][view] = build(fig)
        else:
            for ax in axes:
                fig.add_axes(ax)
        state["shown"] = axes
    return axes


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: a widget's tensors are tiny, and on a busy machine a parallel region waits for a
    second core (a 0.3 ms computation then takes 15 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FigureWidget(widgets.VBox):
    """Controls above a picture that ``draw(fig, **values)`` redraws whenever a control's value changes.

    >>> import ipywidgets as W
    >>> def draw(fig, freq):
    ...     fig.add_subplot().plot([i * freq for i in range(5)])
    >>> w = FigureWidget(draw, {"freq": W.IntSlider(1, 1, 5)}, name="demo")
    >>> w.controls["freq"].value = 3          # redraws: w.image.value holds the new PNG

    ``layout="constrained"`` lays the figure out anew on every redraw, which costs a second text pass in
    ``savefig``; explorers that must redraw in under 100 ms pass ``layout=None`` and place their axes themselves.
    With ``keep=True`` the figure is not cleared between redraws: ``draw`` reuses its Axes and artists (cached on
    the figure) and replaces only what changes, which is cheaper than rebuilding them; ``draw`` must still work
    on a fresh figure.
    """

    def __init__(self, draw: Callable[..., None], controls: Mapping[str, widgets.ValueWidget], name: str = "figure",
                 figsize: tuple[float, float] = (9.0, 4.0), dpi: int = 100, columns: int = 3,
                 layout: str | None = "constrained", keep: bool = False) -> None:
        self.draw, self.name, self.dpi, self.keep = draw, name, dpi, keep
        self.controls = dict(controls)
        self.fig = Figure(figsize=figsize, layout=layout)  # None: the draw function places the axes (faster)
        FigureCanvasAgg(self.fig)  # its own canvas: the renderer and its text-metrics cache are reused
        self.image = widgets.Image(format="png")
        for control in self.controls.values():
            control.observe(self.redraw, names="value")
        items = list(self.controls.values())
        rows = [widgets.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
        super().__init__(rows + [self.image])
        self.redraw()

    @property
    def values(self) -> dict:
        """The current value of every control, by name."""
        return {name: c.value for name, c in self.controls.items()}

    _held = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold redraws while linked controls are brought into line, so that one change redraws once."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def redraw(self, *_: object) -> None:
        """Draw the figure for the current values (on a cleared figure unless ``keep``) and send the PNG."""
        if self._held:
            return
        if not self.keep:
            self.fig.clear()
        with one_thread():
            self.draw(self.fig, **self.values)
        self.image.value = figure_png(self.fig, self.dpi)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{self.name}({shown})"

    def _repr_mimebundle_(self, **kwargs: object) -> dict:
        """Widget view for live frontends, the PNG for static ones, a short text for nbval."""
        return {"text/plain": repr(self)[:200], "image/png": base64.b64encode(self.image.value).decode(),
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self.model_id}}

    if IPYWIDGETS_7:  # ipywidgets 7 (Colab) displays through _ipython_display_, not _repr_mimebundle_
        def _ipython_display_(self, **kwargs: object) -> None:
            from IPython.display import display
            display(self._repr_mimebundle_(), raw=True)
