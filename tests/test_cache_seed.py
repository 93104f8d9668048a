"""The committed cache seeds (tests/cache_seed.py) rebuild the caches they were dumped from, row for row."""
import sqlite3

import cache_seed


def _all(path, table):
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(f"SELECT * FROM {table}").fetchall())
    finally:
        db.close()


def test_a_seeded_cache_holds_the_seed_and_links_the_models(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_CACHE_DIR", str(tmp_path / "suite"))
    cache = cache_seed.seeded_cache(tmp_path / "run", "smoke")
    assert (cache / "models").is_symlink() and (cache / "models").resolve() == (tmp_path / "suite" / "models").resolve()
    seeded = cache_seed.seeded_rows("smoke")
    assert seeded["judge3.sqlite"] > 0 and seeded["features.sqlite"] > 0
    assert {f: cache_seed.rows(cache / f) for f in cache_seed.FILES} == seeded
    assert cache_seed.new_rows(cache, "smoke") == 0
    # one more row is counted as computed beyond the seed
    db = sqlite3.connect(cache / "judge3.sqlite")
    db.execute("INSERT INTO facets VALUES ('k', '[0]')")
    db.commit()
    db.close()
    assert cache_seed.new_rows(cache, "smoke") == 1


def test_export_then_seed_round_trips_every_row(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_CACHE_DIR", str(tmp_path / "suite"))
    cache = cache_seed.seeded_cache(tmp_path / "a", "smoke")
    monkeypatch.setattr(cache_seed, "SEED_DIR", tmp_path / "seed")
    cache_seed.export(cache, "copy")
    again = cache_seed.seeded_cache(tmp_path / "b", "copy")
    for f, table in cache_seed.FILES.items():
        assert _all(again / f, table) == _all(cache / f, table)
