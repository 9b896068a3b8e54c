"""The local models by name: which family module prepares each, and where its mlx-lm directory lives.

Names a role can use offline: ``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b`` (Qwen2.5-Coder Instruct,
dense float32 from Q4_K_M GGUFs) and ``smollm2-135m`` / ``smollm2-135m-q4`` (the tiny model; the old
names ``embedded`` / ``embedded-q4`` still work).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from . import qwen25_coder, smollm2
from .convert import ConversionReport
from .sources import Progress

__all__ = ["LOCAL", "LocalModel", "local_dir", "prepare"]


class LocalModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    family: str
    label: str  # what it is, for reports
    license: str
    dir_name: str
    prepare: Callable[..., list[ConversionReport]]


def _qwen(name: str) -> Callable[..., list[ConversionReport]]:
    def run(cache_dir: Path, models_dir: Path, *, download: bool, force: bool,
            progress: Progress | None) -> list[ConversionReport]:
        return [qwen25_coder.prepare(name, cache_dir, models_dir, download=download, force=force, progress=progress)]
    return run


def _smollm(variant: smollm2.Variant) -> Callable[..., list[ConversionReport]]:
    def run(cache_dir: Path, models_dir: Path, *, download: bool, force: bool,
            progress: Progress | None) -> list[ConversionReport]:
        if progress is not None:
            progress(f"smollm2-135m ({variant}): fetching, checking and converting")
        report = smollm2.setup(cache_dir, models_dir, download=download, force=force, variants=(variant,))
        return report.conversions
    return run


_QWEN_LICENSE = "Apache-2.0 (Qwen2.5-Coder, Alibaba Cloud's Qwen team)"
LOCAL: dict[str, LocalModel] = {
    "qwen2.5-coder-0.5b": LocalModel(name="qwen2.5-coder-0.5b", family="qwen2.5-coder",
                                     label="Qwen2.5-Coder-0.5B-Instruct, fp32 from Q4_K_M", license=_QWEN_LICENSE,
                                     dir_name=qwen25_coder.MODELS["qwen2.5-coder-0.5b"].dir_name,
                                     prepare=_qwen("qwen2.5-coder-0.5b")),
    "qwen2.5-coder-1.5b": LocalModel(name="qwen2.5-coder-1.5b", family="qwen2.5-coder",
                                     label="Qwen2.5-Coder-1.5B-Instruct, fp32 from Q4_K_M", license=_QWEN_LICENSE,
                                     dir_name=qwen25_coder.MODELS["qwen2.5-coder-1.5b"].dir_name,
                                     prepare=_qwen("qwen2.5-coder-1.5b")),
}
for _alias, _variant in (("smollm2-135m", "dense"), ("embedded", "dense"), ("smollm2-135m-q4", "q4"),
                         ("embedded-q4", "q4")):
    LOCAL[_alias] = LocalModel(name=_alias, family="smollm2", label=f"SmolLM2-135M-Instruct, {_variant} from Q4_1",
                               license="Apache-2.0 (SmolLM2, Hugging Face)",
                               dir_name=smollm2.embedded_dir(Path(), _variant).name, prepare=_smollm(_variant))


def local_dir(models_dir: Path, name: str) -> Path:
    return models_dir / LOCAL[name].dir_name


def prepare(names: list[str], cache_dir: Path, models_dir: Path, *, download: bool = True, force: bool = False,
            progress: Progress | None = None) -> list[ConversionReport]:
    """Fetch, verify and convert each named local model once (names sharing a directory are done once)."""
    reports: list[ConversionReport] = []
    done: set[str] = set()
    for name in names:
        model = LOCAL[name]
        if model.dir_name in done:
            continue
        done.add(model.dir_name)
        reports.extend(model.prepare(cache_dir, models_dir, download=download, force=force, progress=progress))
    return reports
