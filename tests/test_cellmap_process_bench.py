"""The whole-process CellMap workload builds a valid CellMap submission and scores it."""

from gpueval.bench import cellmap_process


def test_cellmap_224_scores_its_crop_in_a_fresh_process(monkeypatch):
    monkeypatch.setattr(cellmap_process, "REPEAT", 1)
    rec = cellmap_process.bench_cellmap_224("cpu", 0.2)
    assert rec["check"], rec
    assert rec["voxels"] == 45 ** 3
    # the prediction is built imperfect (misses, splits, blobs): a real, not perfect, score
    assert 0.3 < rec["instance_score"] < 1.0
    assert rec["seconds"] > 0 and rec["floor_seconds"] > 0
    assert rec["ratio_to_floor"] == rec["seconds"] / rec["floor_seconds"]
