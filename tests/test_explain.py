"""Explain this cell / this error: prompt building (unit) and the route (real server, real model)."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import post_then_hang_up

from jupyter_copilot.explain import build_messages, remove_code_blocks, strip_ansi
from jupyter_copilot.schema import ExplainRequest

KEY_ERROR = {
    "ename": "KeyError",
    "evalue": "'prix'",
    "traceback": [
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
        "Cell \x1b[0;32mIn[3], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m df[\x1b[38;5;124m'prix'\x1b[39m]",
        "\x1b[0;31mKeyError\x1b[0m: 'prix'",
    ],
}


def test_strip_ansi_leaves_plain_traceback():
    plain = strip_ansi("\n".join(KEY_ERROR["traceback"]))
    assert "\x1b" not in plain
    assert "----> 1 df['prix']" in plain


@pytest.mark.parametrize("language, word", [("fr", "français"), ("en", "English")])
def test_messages_ask_for_the_students_language(language, word):
    req = ExplainRequest(kind="error", source="df['prix']", error=KEY_ERROR, language=language)
    messages = build_messages(req, "on", language, budget_tokens=512)
    assert word in messages[0]["content"]
    assert "KeyError: 'prix'" in messages[1]["content"]
    assert "\x1b" not in messages[1]["content"]


def test_hint_prompt_forbids_the_corrected_code():
    req = ExplainRequest(kind="error", source="print(x)", error={"ename": "NameError", "evalue": "x"})
    hint = build_messages(req, "hint", "en", 512)[1]["content"]
    full = build_messages(req, "on", "en", 512)[1]["content"]
    assert "Do not give the corrected code" in hint
    assert "corrected line" in full


def test_context_is_trimmed_from_the_oldest_cell():
    cells = [{"cell_type": "code", "source": f"step_{i} = {i}\n" * 40} for i in range(10)]
    req = ExplainRequest(kind="cell", source="print(step_9)", context_cells=cells)
    content = build_messages(req, "on", "en", budget_tokens=300)[1]["content"]
    assert "step_9" in content
    assert "step_0 =" not in content


def test_hint_mode_removes_code_blocks_even_while_streaming():
    answer = "Look at the key.\n```python\ndf['price']\n```\nWhich columns exist?"
    cleaned = remove_code_blocks(answer, "en")
    assert "df['price']" not in cleaned and "Which columns exist?" in cleaned
    assert "df[" not in remove_code_blocks("Try:\n```python\ndf[", "fr")


# -- the route, with the real model --------------------------------------------------------

@pytest.mark.model
async def test_explain_error_streams_markdown(api):
    await api.wait_ready()
    chunks = await api.stream(
        "explain",
        {"kind": "error", "source": "df['prix']", "error": KEY_ERROR, "language": "fr", "request_id": "e1"},
    )
    assert chunks[-1]["done"] is True and not chunks[-1].get("error")
    assert chunks[-1]["text"].strip()
    assert chunks[-1]["model"]
    assert len(chunks) >= 2


@pytest.mark.model
async def test_explain_cell_without_stream(api):
    await api.wait_ready()
    reply = await api.post("explain?stream=0", {"kind": "cell", "source": "x = [i * i for i in range(5)]"})
    assert reply.code == 200, reply.body
    data = json.loads(reply.body)
    assert data["text"].strip() and data["model"] and data["timing"]["generated_tokens"] > 0


@pytest.mark.model
@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "error", "source": "x"}, "error"),
        ({"kind": "poem", "source": "x"}, "kind"),
        ({"kind": "cell"}, "source"),
        ({"kind": "cell", "source": "x", "language": "de"}, "language"),
    ],
)
async def test_explain_bad_input_is_400(api, body, field):
    reply = await api.post("explain", body)
    assert reply.code == 400
    assert json.loads(reply.body)["field"] == field


@pytest.mark.model
@pytest.mark.copilot(explain_error_mode="off")
async def test_policy_off_cannot_be_overridden_by_the_student(api, copilot_config):
    await api.wait_ready()
    body = {"kind": "error", "source": "x", "error": KEY_ERROR, "mode": "on", "policy": "on"}
    reply = await api.post("explain", body)
    assert reply.code == 403
    assert "explain_error" in json.loads(reply.body)["error"]
    status = json.loads((await api.get("status")).body)
    assert status["features"]["explain_error"]["mode"] == "off"
    # the other feature is untouched
    reply = await api.post("explain?stream=0", {"kind": "cell", "source": "x = 1"})
    assert reply.code == 200


@pytest.mark.model
@pytest.mark.copilot(explain_cell_mode="hint")
async def test_hint_policy_is_applied_whatever_the_request_says(api, copilot_config, copilot_app):
    await api.wait_ready()
    seen = []
    original = copilot_app.engine_instance.chat

    def spy(messages, *args, **kw):
        seen.append(messages)
        return original(messages, *args, **kw)

    copilot_app.engine_instance.chat = spy
    reply = await api.post("explain?stream=0", {"kind": "cell", "source": "x = 1", "mode": "on"})
    assert reply.code == 200
    assert "```" not in json.loads(reply.body)["text"]
    assert "Do not rewrite or complete the code" in seen[0][1]["content"]


@pytest.mark.model
@pytest.mark.copilot(explain_max_tokens=1000)
async def test_explain_is_cancelled_by_a_newer_request_or_disconnect(api, copilot_app):
    await api.wait_ready()
    body = {"kind": "cell", "source": "for i in range(10):\n    print(i)"}
    await post_then_hang_up(api, "explain", body, after=60, first_text=True)
    for _ in range(300):
        report = copilot_app.usage.report()["total"]
        if report["requests"] >= 1:
            break
        await asyncio.sleep(0.1)
    explained = copilot_app.usage.report()["features"]["explain_cell"]
    assert explained["cancelled"] == 1
    assert explained["generated_tokens"] < 1000


NAMES = [{"name": "df", "summary": "DataFrame 30x2, columns: 'nom' object, 'price' float64"}]


@pytest.mark.parametrize("language, label", [("en", "## Live in the kernel after the last run"),
                                             ("fr", "## Présent dans le noyau après la dernière exécution")])
def test_a_chat_of_its_own_shows_the_kernels_names(language, label):
    """A KeyError's real columns, for the explanations that are not written after the
    notebook (the campus's engines, questions): bounded, control tokens broken."""
    req = ExplainRequest(kind="error", source="df['prix']", error=KEY_ERROR, language=language,
                         kernel_namespace=NAMES)
    content = build_messages(req, "on", language, 512)[1]["content"]
    assert f"{label}\n```\ndf: DataFrame 30x2, columns: 'nom' object, 'price' float64\n```" in content
    # Written after the notebook, the document shows them already.
    after = build_messages(req, "on", language, 512, document="# %%\ndf['prix']")[1]["content"]
    assert "'price' float64" not in after
    many = [{"name": f"v{i}<|im_end|>", "summary": "x" * 500} for i in range(64)]
    req = ExplainRequest(kind="cell", source="print(1)", kernel_namespace=many)
    content = build_messages(req, "on", "en", 512)[1]["content"]
    assert "<|im_end|>" not in content and len(content) < 2_000
