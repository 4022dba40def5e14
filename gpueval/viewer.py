"""Neuroglancer for errors: the report's link and ``gpueval view``.

Two ways to look at a 3-D submission beside its truth:

* **A link** in the HTML report (:func:`report_link`). The public neuroglancer cannot read
  ``file://`` paths, so a link is only made when the data are published: ``url_prefix``
  (``https://host/data``, ``s3://bucket/data``, ``gs://bucket/data``) stands for the folder that
  holds the truth's and the submission's top folders, and each layer's source becomes
  ``<scheme>://<url_prefix>/<top folder name>/<path inside it>``. Without a prefix the report
  shows the ``gpueval view`` command instead.
* **A local viewer** (``gpueval view``, :func:`serve`): the ``neuroglancer`` Python package
  (``pip install "gpueval[viewer]"``) serves the local arrays to a browser through its own
  HTTP server, reading the chunks the browser asks for from the files (nothing is copied), with
  image-free segmentation layers ``truth``, ``submission`` and ``errors``. The ``errors`` layer
  is computed lazily per requested chunk: 0 agreement, 1 false positive (submission only),
  2 false negative (truth only), 3 both labelled but differently — split/merge candidates
  (for instance labels a voxel pair whose ids disagree under the truth→submission majority map
  is coloured 3).

Only zarr (v2/v3) and n5 arrays have neuroglancer data sources; other inputs (TIFF, HDF5, npz)
are still viewable locally through :func:`serve`, which opens them with
:func:`gpueval.io.arrays.open_volume`.
"""

from __future__ import annotations

import json
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: public viewer the report's link opens (the report stays self-contained: it is only followed)
NEUROGLANCER_URL = "https://neuroglancer-demo.appspot.com/#!"

#: ``errors`` layer values
AGREE, FALSE_POSITIVE, FALSE_NEGATIVE, MISLABELLED = 0, 1, 2, 3


def data_scheme(path: str | Path) -> str:
    """Neuroglancer's scheme for a local array: ``zarr3``, ``zarr2``, ``n5`` or ``zarr``."""
    p = Path(path)
    if (p / "zarr.json").is_file():
        return "zarr3"
    if (p / ".zarray").is_file() or (p / ".zgroup").is_file():
        return "zarr2"
    if (p / "attributes.json").is_file():
        return "n5"
    return "zarr"


def published_source(path: str | Path, root: str | Path, url_prefix: str) -> str:
    """The data source of ``path`` once ``root``'s parent folder is published at ``url_prefix``.

    Parameters
    ----------
    path : the array on disk (``root`` itself or inside it).
    root : the truth or submission given on the command line.
    url_prefix : where the folder holding ``root`` is served (http(s)://, s3://, gs://).

    Returns
    -------
    str
        e.g. ``zarr2://https://host/data/gt.zarr/crop1/mito``.
    """
    p, r = Path(path).resolve(), Path(root).resolve()
    inside = p.relative_to(r).as_posix() if p != r else ""
    where = "/".join(part for part in (url_prefix.rstrip("/"), r.name, inside) if part)
    return f"{data_scheme(p)}://{where}"


def link_state(truth: str | Path, submission: str | Path, *, truth_root: str | Path,
               submission_root: str | Path, url_prefix: str,
               position: Sequence[float] | None = None,
               voxel_size: Sequence[float] | None = None, note: str = "worst item"
               ) -> dict[str, Any]:
    """A viewer state with ``truth`` and ``submission`` segmentation layers from the published
    copies and an ``errors`` point annotation at ``position`` (voxel coordinates, array order).
    """
    layers: list[dict[str, Any]] = [
        {"type": "segmentation", "name": "truth",
         "source": published_source(truth, truth_root, url_prefix)},
        {"type": "segmentation", "name": "submission",
         "source": published_source(submission, submission_root, url_prefix)},
        {"type": "annotation", "name": "errors", "annotations": (
            [{"type": "point", "id": "worst", "point": [float(v) for v in position],
              "description": note}] if position is not None else [])},
    ]
    state: dict[str, Any] = {"layers": layers, "layout": "4panel",
                             "selectedLayer": {"layer": "submission", "visible": True}}
    if position is not None:
        state["position"] = [float(v) for v in position]
    if voxel_size is not None:
        names = ["z", "y", "x"][-len(voxel_size):]
        state["dimensions"] = {n: [float(v) * 1e-9, "m"]
                               for n, v in zip(names, voxel_size, strict=True)}
    return state


def state_url(state: Mapping[str, Any], base: str = NEUROGLANCER_URL) -> str:
    """The viewer link for ``state`` (the state travels in the URL fragment)."""
    return base + urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")


def view_command(challenge: str, truth: str | Path, submission: str | Path) -> str:
    """The ``gpueval view`` command line that opens this pair locally."""
    return " ".join(["gpueval", "view", challenge, "--truth", shlex.quote(str(truth)),
                     "--submission", shlex.quote(str(submission))])


def report_link(result: Any, truth: str | Path, submission: str | Path,
                url_prefix: str | None = None) -> dict[str, Any] | None:
    """What the report shows to open the worst item in neuroglancer.

    Parameters
    ----------
    result : the :class:`~gpueval.result.Result` (its items pick the worst crop/case).
    truth, submission : the paths scored.
    url_prefix : where the folders holding ``truth`` and ``submission`` are published.

    Returns
    -------
    dict or None
        ``{"command": "gpueval view ..."}`` always for a viewable pair, plus ``{"state", "url"}``
        when ``url_prefix`` is given; ``None`` when the inputs are not zarr/n5 arrays on disk.
    """
    pair = _zarr_pair(result, Path(truth), Path(submission))
    if pair is None:
        return None
    t, s, position, voxel_size, note = pair
    entry: dict[str, Any] = {"command": view_command(result.challenge, truth, submission)}
    if url_prefix:
        state = link_state(t, s, truth_root=truth, submission_root=submission,
                           url_prefix=url_prefix, position=position, voxel_size=voxel_size,
                           note=note)
        entry.update(state=state, url=state_url(state))
    return entry


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zarray", ".zgroup"))


def _zarr_pair(result: Any, truth: Path, submission: Path):
    """The worst item's truth and submission arrays, centre, voxel size and a note."""
    from gpueval.pictures import worst

    if result.challenge == "cellmap":
        def bad(it):
            n = (it.get("tp") or 0) + (it.get("fp") or 0) + (it.get("fn") or 0)
            return -((it.get("fp") or 0) + (it.get("fn") or 0)) / n if n else None

        item = worst([it for it in result.items if it.get("status") != "missing"], bad)
        if item is None:
            return None
        crop, label = str(item["id"]).split("/", 1)
        t, s = truth / crop / label, submission / crop / label
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), _voxel_size(t), f"{item['id']} (worst)"
    if result.challenge == "medsegfm":
        item = worst(result.items, lambda it: it.get("dsc"))
        if item is None:
            return None
        t, s = truth / f"{item['id']}.zarr", submission / f"{item['id']}.zarr"
        t = t / "gts" if _is_zarr(t / "gts") else t
        s = s / "segs" if _is_zarr(s / "segs") else s
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), None, f"case {item['id']} (worst)"
    if _is_zarr(truth) and _is_zarr(submission):
        return truth, submission, _centre(truth), None, "volume centre"
    return None


def _centre(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [n / 2 for n in open_volume(p).data.shape]
    except Exception:  # a link without a position still opens the layers
        return None


def _voxel_size(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [float(v) for v in open_volume(p).voxel_size]
    except Exception:
        return None
