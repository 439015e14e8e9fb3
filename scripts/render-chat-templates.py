#!/usr/bin/env python3
"""Render corral's chat-template corpus with Python's jinja2, the way Hugging Face renders it.

core/tests/chat_templates.rs checks that corral's minijinja renderer (core/src/chat.rs)
produces byte for byte what this script writes. The reference is transformers'
`apply_chat_template` (src/transformers/utils/chat_template_utils.py, `_compile_jinja_template`):

- `jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
  extensions=[AssistantTracker, jinja2.ext.loopcontrols])`. The AssistantTracker extension
  only adds the `{% generation %}` tag, which no template of the corpus uses: left out.
- filter `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` =
  `json.dumps` with those arguments (not jinja2's HTML-escaping `tojson`).
- global `raise_exception(message)` raising `jinja2.exceptions.TemplateError(message)`.
- global `strftime_now(format)` = `datetime.now().strftime(format)`. Here it returns the
  marker `«strftime_now(FORMAT)»` instead, so the expected files do not depend on the day they
  were made: the Rust test puts today's date (UTC, as corral computes it) in its place. Every
  template of the corpus prints strftime_now's result as it is, so the marker stands exactly
  where the date goes.
- the context corral passes (core/src/chat.rs `ChatTemplate::render`): `messages`, `tools`
  (None when there are none), `add_generation_prompt`, `bos_token`, `eos_token`.
  transformers also passes `documents=None` and the tokenizer's other special tokens; corral
  does not, and no corpus template reads them when they are absent in a way that matters here.
  No `date_string` either: Llama 3.1 then uses its built-in "26 Jul 2024" on both sides.

Messages are built from cases.json exactly as corral's `Message::to_template_value` builds
them: {"role", "content" (None if null), "tool_calls": [{"id", "type": "function",
"function": {"name", "arguments": <arguments parsed as JSON>}}] (only when non-empty),
"tool_call_id" (only when set), "name" (only when set)}.

Output, one file per (template, case) in core/tests/data/chat_templates/expected/:
- `<template>__<case>.txt`: the rendered text, UTF-8, byte for byte.
- `<template>__<case>.error.json`: the template failed. {"raised": true, "message": ...} when
  it called raise_exception (corral must fail with a TemplateError containing that message);
  {"raised": false, "type": ..., "message": ...} for any other jinja2/Python error (a
  TypeError adding None to a string, ...): corral must fail with a TemplateError, its wording
  being its own.

Usage (jinja2 3.1.6, the version transformers' current releases are tested with):
    python3 -m venv target/jinja-venv && target/jinja-venv/bin/pip install jinja2==3.1.6
    target/jinja-venv/bin/python scripts/render-chat-templates.py          # regenerate
    target/jinja-venv/bin/python scripts/render-chat-templates.py --check  # exit 1 on drift

Templates left out of the corpus, and why:
- fireworks-ai/llama-3-firefunction-v2: reads the context variables `functions` and
  `datetime`, which apply_chat_template does not pass; it fails the same way for everyone.
- Templates whose output depends on today's date only through strftime_now are in (see the
  marker above); none depends on it another way.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import tempfile
from pathlib import Path

JINJA2_VERSION = "3.1.6"

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "core" / "tests" / "data" / "chat_templates"
EXPECTED = DATA / "expected"
DATE_MARKER = "«strftime_now({})»"

try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.exit(
        "render-chat-templates: jinja2 is not installed; run\n"
        f"  python3 -m venv target/jinja-venv && target/jinja-venv/bin/pip install jinja2=={JINJA2_VERSION}\n"
        "  target/jinja-venv/bin/python scripts/render-chat-templates.py"
    )


class RaisedException(jinja2.exceptions.TemplateError):
    """What the template's own raise_exception(...) raises (a TemplateError, as in transformers)."""


def raise_exception(message):
    raise RaisedException(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return DATE_MARKER.format(format)


def make_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def parse_arguments(text: str):
    # corral: serde_json::from_str(arguments), falling back to the text itself.
    try:
        return json.loads(text)
    except ValueError:
        return text


def template_message(m: dict) -> dict:
    out = {"role": m["role"], "content": m.get("content")}
    calls = m.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": parse_arguments(c["arguments"])},
            }
            for c in calls
        ]
    if m.get("tool_call_id") is not None:
        out["tool_call_id"] = m["tool_call_id"]
    if m.get("name") is not None:
        out["name"] = m["name"]
    return out


def case_names(template: dict) -> list[str]:
    return [c if isinstance(c, str) else c["case"] for c in template["cases"]]


def render_all(out_dir: Path) -> int:
    spec = json.loads((DATA / "cases.json").read_text(encoding="utf-8"))
    tool_sets = spec["tool_sets"]
    env = make_environment()
    count = 0
    for template in spec["templates"]:
        name = template["name"]
        source = (DATA / f"{name}.jinja").read_text(encoding="utf-8")
        compiled = env.from_string(source)
        for case_name in case_names(template):
            case = spec["cases"][case_name]
            tools = tool_sets[case["tools"]] if "tools" in case else None
            context = dict(
                messages=[template_message(m) for m in case["messages"]],
                tools=tools,
                add_generation_prompt=case["add_generation_prompt"],
                bos_token=template["bos_token"],
                eos_token=template["eos_token"],
            )
            stem = f"{name}__{case_name}"
            try:
                text = compiled.render(**context)
            except RaisedException as e:
                error = {"raised": True, "message": e.message}
            except Exception as e:  # the template's own failure, recorded as the expected result
                error = {"raised": False, "type": type(e).__name__, "message": str(e)}
            else:
                (out_dir / f"{stem}.txt").write_bytes(text.encode("utf-8"))
                count += 1
                continue
            body = json.dumps(error, ensure_ascii=False, indent=2) + "\n"
            (out_dir / f"{stem}.error.json").write_bytes(body.encode("utf-8"))
            count += 1
    return count


def check(fresh: Path) -> bool:
    ok = True
    old = {p.name for p in EXPECTED.iterdir()} if EXPECTED.is_dir() else set()
    new = {p.name for p in fresh.iterdir()}
    for name in sorted(old - new):
        print(f"stale: expected/{name} (no longer generated)")
        ok = False
    for name in sorted(new - old):
        print(f"missing: expected/{name} (generated, not committed)")
        ok = False
    for name in sorted(old & new):
        a = (EXPECTED / name).read_bytes()
        b = (fresh / name).read_bytes()
        if a != b:
            ok = False
            print(f"differs: expected/{name}")
            diff = difflib.unified_diff(
                a.decode("utf-8", "replace").splitlines(keepends=True),
                b.decode("utf-8", "replace").splitlines(keepends=True),
                f"committed/{name}",
                f"regenerated/{name}",
            )
            lines = list(diff)[:40]
            sys.stdout.writelines(lines)
            if lines and not lines[-1].endswith("\n"):
                print()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="regenerate into a temporary folder and diff")
    args = parser.parse_args()
    if jinja2.__version__ != JINJA2_VERSION:
        print(
            f"render-chat-templates: jinja2 {jinja2.__version__} found, {JINJA2_VERSION} expected "
            f"(target/jinja-venv/bin/pip install jinja2=={JINJA2_VERSION})",
            file=sys.stderr,
        )
        return 2
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            count = render_all(Path(tmp))
            if not check(Path(tmp)):
                print("render-chat-templates: expected files drifted; regenerate with scripts/render-chat-templates.py")
                return 1
        print(f"render-chat-templates: {count} expected files up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        count = render_all(Path(tmp))
        if EXPECTED.exists():
            shutil.rmtree(EXPECTED)
        shutil.copytree(tmp, EXPECTED)
    print(f"render-chat-templates: wrote {count} files to {EXPECTED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
