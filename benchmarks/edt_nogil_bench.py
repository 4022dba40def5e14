"""The GIL-free Hausdorff kernel against ``edt`` (issue #18, session 7).

For CellMap-like pairs (a ball and a shifted, 2 %-thinned copy) on N³ boxes it prints:

* CPU ms per call of the pair's Hausdorff: ``edt`` (the two ``edt.edt`` calls alone, and the
  whole ``edt``-based ``hausdorff_max`` before session 7: crop, masks, two EDTs, maxima) and
  the kernel (``gpueval.kernels.distance.hausdorff_max`` now: one call of
  :func:`gpueval.kernels.edt_nogil.hausdorff_sq`);
* the GIL probe: the counting rate of a pure-Python thread during one call on a large box
  (``--probe-box``), relative to its rate beside a sleep (1.0 = the kernel never holds the GIL);
* two threads x N calls against one thread x 2N calls (wall seconds, and the speed-up).

    PYTHONPATH=$PWD python benchmarks/edt_nogil_bench.py [--sizes 24 40 64 96]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from gil_probe import threads_wall  # benchmarks/ is the script's folder


def pair(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[:n, :n, :n]
    c = (n - 1) / 2
    ball = (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 < (0.45 * n) ** 2
    shifted = np.roll(ball, (1, -2, 2), axis=(0, 1, 2))
    return ball, shifted & (rng.random(ball.shape) < 0.98)


def edt_two_calls(a: np.ndarray, b: np.ndarray, vs) -> None:
    import edt

    for m in (a, b):
        edt.edt(np.ascontiguousarray(~m).view(np.uint8), anisotropy=vs, black_border=False)


def edt_hausdorff_max(a: np.ndarray, b: np.ndarray, vs) -> float:
    """``hausdorff_max`` as it was before session 7 (CPU path)."""
    import edt

    from gpueval.kernels.distance import crop_to_union_bbox

    a, b = crop_to_union_bbox(a != 0, b != 0)
    a_out, b_out = a & ~b, b & ~a

    def outside(m):
        return edt.edt(np.ascontiguousarray(~m).view(np.uint8), anisotropy=vs,
                       black_border=False)
    dab = outside(b)[a_out].max() if a_out.any() else 0.0
    dba = outside(a)[b_out].max() if b_out.any() else 0.0
    return float(max(dab, dba))


def cpu_ms(fn, reps: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t) / reps * 1e3


def probe_rate(fn, idle_seconds: float = 0.5) -> float:
    """Counting rate of a Python thread during one call of ``fn``, over its rate beside a
    sleep (1.0: ``fn`` never holds the GIL). One long call, not many short ones: between
    short calls the interpreter hands the GIL over anyway, which hides a kernel that holds it
    for its whole run."""
    def count(stop: threading.Event, out: list) -> None:
        k = 0
        while not stop.is_set():
            k += 1
        out.append(k)

    def rate(call) -> float:
        stop, out = threading.Event(), []
        th = threading.Thread(target=count, args=(stop, out))
        t0 = time.perf_counter()
        th.start()
        call()
        stop.set()
        th.join()
        return out[0] / (time.perf_counter() - t0)

    return rate(fn) / rate(lambda: time.sleep(idle_seconds))


def main() -> None:
    from gpueval.kernels.distance import hausdorff_max

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 40, 64, 96])
    ap.add_argument("--probe-box", type=int, default=192, help="edge of the probe's box")
    args = ap.parse_args()
    vs = (8.0, 8.0, 8.0)
    big_a, big_b = pair(args.probe_box)
    hausdorff_max(big_a[:4, :4, :4], big_b[:4, :4, :4], vs)  # compile before probing
    print(f"GIL probe beside one call on a {args.probe_box}³ pair (1.0 = GIL released): "
          f"edt {probe_rate(lambda: edt_two_calls(big_a, big_b, vs)):.2f}, "
          f"nogil {probe_rate(lambda: hausdorff_max(big_a, big_b, vs)):.2f}")
    print("box   edt x2 ms  edt-hd_max ms  nogil ms   1 thr s  2 thr s   2-thread speed-up "
          "edt  nogil")
    for n in args.sizes:
        a, b = pair(n)
        assert hausdorff_max(a, b, vs) == edt_hausdorff_max(a, b, vs)
        reps = max(5, int(4e6 / n**3))
        t_edt = cpu_ms(lambda a=a, b=b: edt_two_calls(a, b, vs), reps)
        t_old = cpu_ms(lambda a=a, b=b: edt_hausdorff_max(a, b, vs), reps)
        t_new = cpu_ms(lambda a=a, b=b: hausdorff_max(a, b, vs), reps)
        calls = 2 * reps
        speed = {}
        for name, fn in (("edt", lambda a=a, b=b: edt_hausdorff_max(a, b, vs)),
                         ("nogil", lambda a=a, b=b: hausdorff_max(a, b, vs))):
            one, two = threads_wall(fn, calls, 1), threads_wall(fn, calls, 2)
            speed[name] = (one, two, one / two)
        print(f"{n:3d}³  {t_edt:9.3f}  {t_old:13.3f}  {t_new:8.3f}   "
              f"{speed['nogil'][0]:7.3f}  {speed['nogil'][1]:7.3f}   "
              f"{speed['edt'][2]:21.2f}  {speed['nogil'][2]:5.2f}")


if __name__ == "__main__":
    main()
