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

import numpy as np

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


# --------------------------------------------------------------------------------------------
# gpueval view: a local neuroglancer server over the files

#: the challenges whose inputs are volumes (U-RISC and REFUGE score 2-D images)
VOLUME_CHALLENGES = ("cellmap", "medsegfm", "xpress")

#: the ``errors`` layer's classes for instance labels (value → name)
ERROR_CLASSES = {0: "agree", 1: "false object", 2: "miss", 3: "split", 4: "merge"}
SPLIT, MERGE = 3, 4


class LazyChunks:
    """What neuroglancer's ``LocalVolume`` indexes: each request reads only the chunks it
    covers from the files (``volume[slices]`` → a NumPy array), never the whole volume.
    A volume opened by :func:`~gpueval.io.arrays.open_volume` is read through
    :func:`~gpueval.io.arrays.read_region`: only the storage chunks under the request are
    decoded, not the larger dask chunks around them."""

    def __init__(self, data: Any):
        self.data = data
        self.shape = tuple(int(n) for n in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        from gpueval.io.arrays import read_region  # noqa: PLC0415 - viewer runs only

        if isinstance(index, tuple) and hasattr(self.data, "dask"):
            return read_region(self.data, index)
        part = self.data[index]
        return np.asarray(part.compute(scheduler="sync") if hasattr(part, "compute") else part)


def input_volumes(challenge: str, truth: str | Path, submission: str | Path,
                  item: str | None = None) -> dict[str, Any]:
    """The truth and submission volumes ``gpueval view`` shows, opened lazily.

    Parameters
    ----------
    challenge : ``cellmap`` (``item`` = ``crop<ID>/<label>``, default the first in the truth),
        ``medsegfm`` (``item`` = case name, default the first) or ``xpress`` (the submission
        volume; the truth is a skeleton, shown as points).
    truth, submission : the paths ``gpueval score`` takes.
    item : which crop/label or case.

    Returns
    -------
    dict
        ``truth`` and ``submission`` (:class:`gpueval.io.arrays.Volume` or ``None``),
        ``units``, ``item``, ``instance`` (whether ids are instances), ``points`` (XPRESS
        skeleton nodes as (z, y, x) voxel coordinates, else ``None``).

    Raises
    ------
    UsageError
        A 2-D challenge, or an item that is not in the truth.
    """
    from gpueval.errors import UsageError
    from gpueval.io.arrays import open_volume

    if challenge not in VOLUME_CHALLENGES:
        raise UsageError(f"gpueval view shows volumes: {challenge} scores 2-D images; use "
                         f"score --report for its pictures (view: {', '.join(VOLUME_CHALLENGES)})")
    truth, submission = Path(truth), Path(submission)
    if challenge != "xpress" and submission.is_file():
        raise UsageError(f"--submission {submission.name}: gpueval view reads folders in place "
                         "(nothing is copied); unzip it first")
    out: dict[str, Any] = {"units": "nm", "item": item, "instance": True, "points": None}
    if challenge == "cellmap":
        from gpueval.config import load_config

        pairs = sorted(f"{c.name}/{a.name}" for c in truth.iterdir() if c.is_dir()
                       and c.name.startswith("crop") for a in c.iterdir() if _is_zarr(a))
        if not pairs:
            raise UsageError(f"--truth {truth}: no crop<ID>/<label> arrays")
        item = item or pairs[0]
        if item not in pairs:
            raise UsageError(f"--item {item}: not in the truth (e.g. {', '.join(pairs[:5])})")
        label = item.split("/", 1)[1]
        classes = load_config("cellmap").get("instance_classes") or ()
        out.update(item=item, instance=label in classes,
                   truth=open_volume(truth / item),
                   submission=open_volume(submission / item)
                   if _is_zarr(submission / item) else None)
    elif challenge == "medsegfm":
        cases = sorted(p.stem for p in truth.glob("*.npz"))
        if not cases:
            raise UsageError(f"--truth {truth}: no <case>.npz")
        item = item or cases[0]
        if item not in cases:
            raise UsageError(f"--item {item}: not in the truth (e.g. {', '.join(cases[:5])})")
        t = open_volume(truth / f"{item}.npz", "gts")
        with np.load(truth / f"{item}.npz", allow_pickle=False) as z:
            spacing = tuple(float(v) for v in z["spacing"]) if "spacing" in z.files else None
        s_path = submission / f"{item}.npz"
        s = open_volume(s_path, "segs") if s_path.is_file() else None
        if spacing:
            t.voxel_size = spacing
            if s is not None:
                s.voxel_size = spacing
        out.update(item=item, instance=False, units="mm", truth=t, submission=s)
    else:  # xpress: the volume, and the skeleton's nodes as points
        from gpueval.io.skeleton import load_skeleton

        vol = open_volume(submission, "submission")
        # the dataset's own ``resolution``/``offset`` attributes (nm, z y x), as the scorer
        vs = np.asarray(vol.attrs.get("resolution", vol.voxel_size), float)
        off = np.asarray(vol.attrs.get("offset", vol.offset), float)
        skel = load_skeleton(truth)
        zyx = np.asarray(skel.positions, float)[:, ::-1]  # x, y, z nm → z, y, x
        vol.voxel_size = tuple(float(v) for v in vs)
        out.update(item=None, truth=None, submission=vol, points=(zyx - off) / vs)
    return out


def error_classes(truth: Any, submission: Any, *, instance: bool) -> Any:
    """The lazy ``errors`` volume of two aligned label volumes (Dask arrays).

    Semantic labels: 0 agreement, 1 false positive, 2 miss, 3 wrong class. Instance labels
    (:data:`ERROR_CLASSES`): 1 false object (submission only), 2 miss (truth only), 3 split
    (a truth object covered by several submitted objects), 4 merge (a submitted object covering
    several truth objects). The split/merge ids come from one chunked overlap count
    (:func:`gpueval.kernels.stats.contingency`), computed now; the voxels later, per chunk.
    """
    import dask.array as da

    t = truth.rechunk(submission.chunks) if truth.chunks != submission.chunks else truth
    if not instance:
        return da.map_blocks(_semantic_errors, t, submission, dtype=np.uint8)
    from gpueval.engine import map_reduce
    from gpueval.kernels.stats import Contingency, contingency

    table = map_reduce(contingency, [t, submission], Contingency.combine, scheduler="sync")
    both = (table.ids_a != 0) & (table.ids_b != 0)
    a, b = table.ids_a[both], table.ids_b[both]
    ta, na = np.unique(a, return_counts=True)
    tb, nb = np.unique(b, return_counts=True)
    split_ids, merge_ids = ta[na > 1], tb[nb > 1]
    return da.map_blocks(_instance_errors, t, submission, split_ids, merge_ids, dtype=np.uint8)


def _semantic_errors(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    out = np.zeros(t.shape, np.uint8)
    out[(s != 0) & (t == 0)] = FALSE_POSITIVE
    out[(t != 0) & (s == 0)] = FALSE_NEGATIVE
    out[(t != 0) & (s != 0) & (t != s)] = MISLABELLED
    return out


def _instance_errors(t: np.ndarray, s: np.ndarray, split_ids: np.ndarray,
                     merge_ids: np.ndarray) -> np.ndarray:
    out = np.zeros(t.shape, np.uint8)
    out[(s != 0) & (t == 0)] = FALSE_POSITIVE
    out[(t != 0) & (s == 0)] = FALSE_NEGATIVE
    both = (t != 0) & (s != 0)
    out[both & np.isin(t, split_ids)] = SPLIT
    out[both & np.isin(s, merge_ids)] = MERGE  # a merge outranks a split: it is one object
    return out


def serve(challenge: str, truth: str | Path, submission: str | Path, *,
          item: str | None = None, bind_address: str = "127.0.0.1", port: int = 0) -> Any:
    """Start a local neuroglancer with layers ``truth``, ``submission`` and ``errors``.

    Parameters
    ----------
    challenge, truth, submission, item : as :func:`input_volumes`.
    bind_address, port : where neuroglancer's server listens (``port=0``: any free port).

    Returns
    -------
    neuroglancer.Viewer
        Its ``get_viewer_url()`` opens it; the data are read from the files per chunk request.

    Raises
    ------
    UsageError
        neuroglancer is not installed (``pip install "gpueval[viewer]"``), or as
        :func:`input_volumes`.
    """
    from gpueval.errors import UsageError

    try:
        import neuroglancer
    except ImportError as e:
        raise UsageError('gpueval view needs neuroglancer: pip install "gpueval[viewer]"') from e
    vols = input_volumes(challenge, truth, submission, item)
    neuroglancer.set_server_bind_address(bind_address, bind_port=port)
    viewer = neuroglancer.Viewer()
    ref = vols["truth"] or vols["submission"]
    space = neuroglancer.CoordinateSpace(names=["z", "y", "x"][-len(ref.shape):],
                                         units=vols["units"],
                                         scales=[float(v) for v in ref.voxel_size])

    def layer(data):
        return neuroglancer.SegmentationLayer(source=neuroglancer.LocalVolume(
            data=LazyChunks(data), dimensions=space, volume_type="segmentation"))

    with viewer.txn() as state:
        state.dimensions = space
        for name in ("truth", "submission"):
            if vols[name] is not None:
                state.layers[name] = layer(vols[name].data)
        t, s = vols["truth"], vols["submission"]
        if t is not None and s is not None and t.shape == s.shape:
            state.layers["errors"] = layer(error_classes(t.data, s.data,
                                                         instance=vols["instance"]))
        if vols["points"] is not None:
            points = neuroglancer.LocalAnnotationLayer(dimensions=space, annotations=[
                neuroglancer.PointAnnotation(id=str(i), point=[float(v) for v in p])
                for i, p in enumerate(vols["points"][:100_000])])
            state.layers["skeleton nodes"] = points
        state.position = [n / 2 for n in ref.shape]
        state.layout = "4panel"
    return viewer
