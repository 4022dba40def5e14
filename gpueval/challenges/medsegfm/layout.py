"""MedSegFM's layouts: finding and reading the truth cases and the predictions.

Layouts (``shared/specs/cli.md``): truth folder of ``<case>.npz`` with ``gts`` and ``spacing``
(text track: ``text_prompts_json``, or the official pickled ``text_prompts`` read only through
the restricted unpickler); submission folder of ``<case>.npz`` with ``segs``, interactive
``<case>/step_<k>.npz`` with ``segs`` and optional ``running_time``. NumPy files are always
read with ``allow_pickle=False``. For volumes too large for npz, ``<case>.zarr`` (truth: a
group with array ``gts`` whose attributes hold ``spacing``, text track ``text_prompts``;
submission: a group with array ``segs`` or a bare array, optional attribute ``running_time``)
is read lazily chunk by chunk (:func:`gpueval.io.arrays.open_volume`). The truth is read under
the default limits, the submission under the config's ``limits:``.

Choices where the spec is silent or says "unknown":

* **Entries the scorer does not read** (other file types, unknown cases, an ``.npz`` beside a
  ``.zarr`` of the same case, stray files in step folders) are user warnings
  (:func:`_warn_unread`; ``validate`` says the same where it can), as is a case without a
  prediction (:func:`_missing_case_warning`; it is scored as all-zero, see :mod:`.score`).
* **No box** (interactive, spec §5): only an image npz can lack ``boxes``. A truth npz (or
  zarr group) holding ``imgs`` but no ``boxes`` is a case without a box (``has_box`` False;
  :mod:`.interactive` does not run step 1). A plain GT npz (``gts``, ``spacing``) has a box.
* A malformed prediction (wrong shape, non-integer dtype, pickled or missing ``segs``) rejects
  the submission with a one-line reason, where the text script would write a NaN row (which
  a NaN-skipping mean would then reward). Float labels that are whole numbers are read as
  int64 (the official scripts compare them as labels).
* Rejections name paths inside the submission, never the server's folder
  (:func:`_submission_relative`).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import iter_files
from gpueval.io.arrays import load_npz_array, open_volume
from gpueval.io.safe_pickle import NUMPY, restricted_load
from gpueval.limits import Limits, use_limits
from gpueval.notices import warn

MAX_PROMPT_BYTES = 1 << 20
STEP_RE = re.compile(r"^step_(\d+)\.(npz|zarr)$")
SUFFIXES = (".npz", ".zarr")


@contextmanager
def _submission_relative(submission) -> Iterator[None]:
    """Rejections name paths inside the submission, never the server's folder (the array
    readers quote the full path of the file they were given)."""
    try:
        yield
    except Rejected as e:
        root = Path(submission)
        msg = str(e)
        # absolute forms only: a short relative name could match inside ordinary words
        for shown in sorted({str(root.absolute()), str(root.resolve())}, key=len,
                            reverse=True):
            msg = msg.replace(shown + os.sep, "").replace(shown, root.name)
        if msg == str(e):
            raise
        raise Rejected(msg) from e


def _missing_case_warning(name: str, settings: dict[str, Any], *, scoring: bool) -> str:
    verb = "scored" if scoring else "would be scored"
    if settings["track"] == "interactive":
        return (f"{name}/: no folder of step predictions in the submission, {verb} as "
                f"all-zero (DSC 0) for every step; add {name}/step_<k>.npz")
    return (f"{name}: no {name}.npz (or {name}.zarr) in the submission, {verb} as an all-zero "
            f"prediction (DSC 0, counted in the mean); add {name}.npz")


def _warn_unread(sub: Path, cases: list[str] | None, settings: dict[str, Any], *,
                 scoring: bool) -> None:
    """Warn about every submitted entry the scorer does not read: files of another type,
    predictions of unknown cases, a case given both as .npz and .zarr, stray files in an
    interactive case folder (``cases`` None: the truth is unknown, names are not checked)."""
    interactive = settings["track"] == "interactive"
    known = None if cases is None else set(cases)
    ignored, unknown, both = [], [], []
    for p in sorted(sub.iterdir(), key=lambda q: q.name):
        if p.name.startswith("."):
            continue  # .DS_Store and editor files
        if interactive:
            if not p.is_dir() or p.suffix == ".zarr":
                ignored.append(p.name)
            elif known is not None and p.name not in known:
                unknown.append(p.name + "/")
            continue
        if p.suffix not in SUFFIXES:
            ignored.append(p.name + ("/" if p.is_dir() else ""))
        elif known is not None and p.stem not in known:
            unknown.append(p.name)
        elif p.suffix == ".npz" and (sub / f"{p.stem}.zarr").exists():
            both.append(p.stem)
    verb = "" if scoring else "would be "
    if ignored:
        layout = "<case>/step_<k>.npz folders" if interactive else "<case>.npz files"
        warn(f"{_listing(ignored)}: {verb}ignored ({len(ignored)} entries that are not "
             f"{layout}); convert predictions to .npz with a 'segs' array")
    if unknown:
        warn(f"{_listing(unknown)}: {verb}ignored, no truth case of that name; name "
             "predictions as the truth cases")
    if both:
        warn(f"{_listing([f'{n}.npz' for n in both])}: {verb}ignored, the .zarr of the same "
             "case is scored; keep one file per case")
    if interactive and scoring:  # validate checks each step folder itself
        for case in sorted(c for c in (known or ()) if (sub / c).is_dir()):
            stray = [q.name for q in sorted((sub / case).iterdir())
                     if not q.name.startswith(".") and (
                         not (m := STEP_RE.match(q.name))
                         or not 1 <= int(m.group(1)) <= settings["n_steps"])]
            if stray:
                warn(f"{_listing([f'{case}/{n}' for n in stray])}: {verb}ignored (expected "
                     f"step_1..step_{settings['n_steps']}.npz); rename the step files")


def _listing(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def truth_cases(truth) -> list[tuple[str, Path]]:
    """``(case name, path)`` of every ``<case>.npz`` (or ``.zarr``) in the truth folder,
    sorted by name."""
    root = Path(truth)
    if not root.is_dir():
        raise TruthError(f"truth {root} must be a folder of <case>.npz files")
    cases = sorted((p.stem, p) for p in root.iterdir() if p.suffix in SUFFIXES)
    if not cases:
        raise TruthError(f"truth folder {root} holds no .npz case")
    names = [n for n, _ in cases]
    if len(set(names)) != len(names):
        raise TruthError(f"truth folder {root} holds a case both as .npz and .zarr")
    return cases


def load_truth_case(path: Path, track: str, on_slices=None) -> dict[str, Any]:
    """``gts``, ``spacing`` and (text track) the prompts of one truth case.

    The truth is the organiser's: it is read under the default limits, not the submission
    limits of the config's ``limits:`` mapping. ``on_slices`` is handed to the npz reader
    (:func:`gpueval.io.arrays.load_npz_array`) for ``gts``."""
    with use_limits(Limits()):
        return _load_truth_case(path, track, on_slices)


def _load_truth_case(path: Path, track: str, on_slices=None) -> dict[str, Any]:
    if path.suffix == ".zarr":
        return _load_zarr_truth(path, track)
    try:
        gts = load_npz_array(path, "gts", on_slices=on_slices)
        spacing = np.asarray(load_npz_array(path, "spacing"), dtype=np.float64).reshape(-1)
    except Rejected as e:
        raise TruthError(f"truth case {path.name}: {e}") from e
    if gts.ndim != 3:
        raise TruthError(f"truth case {path.name}: gts must be 3-D, got shape {gts.shape}")
    if not (np.issubdtype(gts.dtype, np.integer) or gts.dtype == bool):
        raise TruthError(f"truth case {path.name}: gts must hold integer labels, got {gts.dtype}")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TruthError(f"truth case {path.name}: spacing must be 3 positive numbers, "
                         f"got {spacing.tolist()}")
    case = {"gts": gts, "spacing": tuple(float(s) for s in spacing), "prompts": None,
            "has_box": _npz_has_box(path)}
    if track == "text":
        case["prompts"] = load_text_prompts(path)
    return case


def _npz_has_box(path: Path) -> bool:
    """Whether the interactive step 1 (box prompt) runs for this case (spec §5 "No box").

    Only an image npz tells: a truth npz that holds the image (``imgs``) but no ``boxes``
    key is a case without a box. A plain GT npz (``gts``, ``spacing``) carries no image, so
    the box is taken to exist.
    """
    with zipfile.ZipFile(path) as z:
        names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    return "imgs" not in names or "boxes" in names


def _load_zarr_truth(path: Path, track: str) -> dict[str, Any]:
    try:
        vol = open_volume(path, "gts")
    except Rejected as e:
        raise TruthError(f"truth case {path.name}: {e}") from e
    if vol.data.ndim != 3 or not (np.issubdtype(vol.dtype, np.integer) or vol.dtype == bool):
        raise TruthError(f"truth case {path.name}: gts must be a 3-D integer array")
    spacing = vol.attrs.get("spacing")
    if spacing is None:
        raise TruthError(f"truth case {path.name}: gts needs a 'spacing' attribute")
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TruthError(f"truth case {path.name}: spacing must be 3 positive numbers")
    has_imgs = (path / "imgs").exists()
    has_boxes = "boxes" in vol.attrs or (path / "boxes").exists()
    case = {"gts": vol.data, "spacing": tuple(float(v) for v in spacing), "prompts": None,
            "has_box": not has_imgs or has_boxes}
    if track == "text":
        prompts = vol.attrs.get("text_prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        case["prompts"] = _check_prompts(prompts, path.name)
    return case


def load_text_prompts(path: Path) -> dict[str, Any]:
    """The text prompts of a truth case: ``text_prompts_json`` (preferred) or the official
    pickled ``text_prompts`` (restricted unpickler: a plain dict of str/int only)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "text_prompts_json.npy" in names:
            if z.getinfo("text_prompts_json.npy").file_size > MAX_PROMPT_BYTES:
                raise TruthError(f"truth case {path.name}: text_prompts_json is too large")
            with np.load(path, allow_pickle=False) as npz:
                raw = npz["text_prompts_json"]
            try:
                prompts = json.loads(str(raw.reshape(-1)[0] if raw.ndim else raw.item()))
            except (json.JSONDecodeError, IndexError) as e:
                raise TruthError(f"truth case {path.name}: text_prompts_json is not JSON") from e
        elif "text_prompts.npy" in names:
            if z.getinfo("text_prompts.npy").file_size > MAX_PROMPT_BYTES:
                raise TruthError(f"truth case {path.name}: text_prompts is too large")
            prompts = _pickled_prompts(z.read("text_prompts.npy"), path.name)
        else:
            raise TruthError(f"truth case {path.name}: the text track needs text_prompts_json "
                             "(or the official text_prompts)")
    return _check_prompts(prompts, path.name)


def _check_prompts(prompts: Any, name: str) -> dict[str, Any]:
    if isinstance(prompts, dict):
        # a pickled dict may hold NumPy scalars (np.int64 instance_label) or integer keys;
        # both mean the same as their plain Python forms
        prompts = {(str(int(k)) if isinstance(k, int | np.integer) else k):
                   (int(v) if isinstance(v, np.integer) else v) for k, v in prompts.items()}
    if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in prompts.items()):
        raise TruthError(f"truth case {name}: text prompts must be a dict of str -> str/int")
    if prompts.get("instance_label", 0) not in (0, 1):
        raise TruthError(f"truth case {name}: instance_label must be 0 or 1")
    return prompts


def _pickled_prompts(npy: bytes, name: str) -> Any:
    f = io.BytesIO(npy)
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    except ValueError as e:
        raise TruthError(f"truth case {name}: text_prompts is not a NumPy array ({e})") from e
    if not dtype.hasobject or shape not in ((), (1,)):
        raise TruthError(f"truth case {name}: text_prompts must be one pickled dict")
    try:
        obj = restricted_load(f.read(), allowed=NUMPY)
    except Rejected as e:
        raise TruthError(f"truth case {name}: text_prompts: {e}") from e
    if isinstance(obj, np.ndarray):
        obj = obj.reshape(-1)[0]
    return obj


def load_prediction(path: Path, shape: tuple[int, ...] | None, on_slices=None):
    """``segs`` of one prediction file, checked (integer labels, 3-D, the truth's shape):
    a NumPy array (npz) or a lazy dask array (zarr). ``on_slices`` is handed to the npz
    reader (:func:`gpueval.io.arrays.load_npz_array`)."""
    if path.suffix == ".zarr":
        segs = _open_zarr_segs(path).data
    else:  # the shape is refused before allocating
        segs = load_npz_array(path, "segs", expect_shape=shape, on_slices=on_slices)
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    if isinstance(segs, np.ndarray) and segs.dtype.kind == "f":
        segs = _integral_floats(segs, where)
    if not (np.issubdtype(segs.dtype, np.integer) or segs.dtype == bool):
        raise Rejected(f"{where}: segs must hold integer labels, got {segs.dtype}")
    if segs.ndim != 3:
        raise Rejected(f"{where}: segs must be 3-D (D, H, W), got shape {segs.shape}")
    if shape is not None and tuple(segs.shape) != tuple(shape):
        raise Rejected(f"{where}: segs has shape {segs.shape}, the ground truth "
                       f"{tuple(shape)}")
    return segs


def _integral_floats(segs: np.ndarray, where: str) -> np.ndarray:
    """Float labels that are whole numbers (the official scripts compare them as labels)
    become int64; anything else is refused."""
    if segs.size and not (np.isfinite(segs).all() and (segs == np.round(segs)).all()):
        raise Rejected(f"{where}: segs must hold integer labels; float values that are not "
                       "whole numbers were found")
    if segs.size and (segs.min() < -(2.0**53) or segs.max() > 2.0**53):
        raise Rejected(f"{where}: segs labels are out of range")
    return segs.astype(np.int64)


def _open_zarr_segs(path: Path):
    try:
        return open_volume(path, "segs")
    except Rejected:
        return open_volume(path)  # a bare array


def _find(folder: Path, stem: str) -> Path:
    """``<stem>.npz`` or ``<stem>.zarr`` in ``folder`` (the npz path when neither exists)."""
    for suffix in (".zarr", ".npz"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.npz"


def _running_time(path: Path) -> float:
    if path.suffix == ".zarr":
        value = np.asarray(_open_zarr_segs(path).attrs.get("running_time", 0.0))
    else:
        with zipfile.ZipFile(path) as z:
            if "running_time.npy" not in z.namelist():
                return 0.0
        value = load_npz_array(path, "running_time")
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise Rejected(f"{path.name}: running_time must be one number of seconds")
    t = float(value.reshape(-1)[0])
    if not math.isfinite(t) or t < 0:
        raise Rejected(f"{path.name}: running_time must be finite and >= 0, got {t}")
    return t


def _truth_shape(path: Path) -> tuple[int, ...]:
    if path.suffix == ".zarr":
        return tuple(open_volume(path, "gts").shape)
    with zipfile.ZipFile(path) as z, z.open("gts.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        return tuple(read(f)[0])


def _submission_dir(submission) -> Path:
    sub = Path(submission)
    if not sub.is_dir():
        raise Rejected(f"submission {sub.name} must be a folder of <case>.npz predictions")
    for _ in iter_files(sub):  # refuses links leaving the folder, hard links, FIFOs, floods
        pass
    return sub
