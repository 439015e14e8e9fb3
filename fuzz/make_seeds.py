#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (committed; rerun after changing an input format).

Input formats (see core/src/fuzzing.rs):
  gguf_header    a GGUF file's bytes
  chat_template  TEMPLATE NUL CONVERSATION-JSON ({"messages", "tools", "add_generation_prompt", ...})
  json_schema    JSON schema text
  tool_calls     SELECTOR MODEL-OUTPUT (selector & 3: 0 hermes, 1 llama3, 2 mistral, 3 generic;
                 (selector >> 2) + 1: bytes per push)
  c_json         MESSAGES-JSON [NUL TOOLS-JSON] (odd length: Qwen 2.5's template; even: the model's)
"""
import json
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
TEMPLATES = FUZZ.parent / "core" / "tests" / "data" / "chat_templates"
CORPUS = FUZZ / "corpus"


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# ---------------------------------------------------------------------------------------------
# gguf_header: tiny GGUF files (v2/v3), metadata of every type, tensor tables, aligned data.

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
          U64: "<Q", I64: "<q", F64: "<d"}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(kind, value):
    if kind == STR:
        return gstr(value)
    if kind == ARR:
        item_kind, items = value
        return struct.pack("<IQ", item_kind, len(items)) + b"".join(gvalue(item_kind, v) for v in items)
    return struct.pack(SCALAR[kind], value)


def gguf(kvs, tensors=(), version=3, alignment=32, data=b""):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, value in kvs:
        out += gstr(key) + struct.pack("<I", kind) + gvalue(kind, value)
    for name, dims, ggml_type, offset in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
    if tensors:
        out += b"\0" * (-len(out) % alignment)
        out += data or b"\0" * 64
    return out


def llama_kvs(arch="llama", layers=2, **extra):
    kvs = [
        ("general.architecture", STR, arch),
        ("general.name", STR, "tiny"),
        (f"{arch}.block_count", U32, layers),
        (f"{arch}.context_length", U32, 2048),
        (f"{arch}.embedding_length", U32, 64),
        (f"{arch}.feed_forward_length", U32, 128),
        (f"{arch}.attention.head_count", U32, 4),
        (f"{arch}.attention.head_count_kv", U32, 2),
        (f"{arch}.rope.dimension_count", U32, 16),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5),
    ]
    for key, (kind, value) in extra.items():
        kvs.append((f"{arch}.{key}", kind, value))
    return kvs


TOKENIZER = [
    ("tokenizer.ggml.model", STR, "gpt2"),
    ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "</s>", "a", "b", "ab", " "])),
    ("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 1, 1, 1, 1])),
    ("tokenizer.ggml.merges", ARR, (STR, ["a b"])),
    ("tokenizer.ggml.bos_token_id", U32, 0),
    ("tokenizer.ggml.eos_token_id", U32, 1),
    ("tokenizer.chat_template", STR, "{% for m in messages %}{{ m.content }}{% endfor %}"),
]


def gguf_seeds():
    write("gguf_header", "minimal_v3.gguf", gguf([("general.architecture", STR, "llama")]))
    write("gguf_header", "empty_metadata_v2.gguf", gguf([], version=2))
    write("gguf_header", "llama_tokenizer.gguf", gguf(llama_kvs() + TOKENIZER))
    tensors = [("token_embd.weight", [64, 6], 0, 0), ("output_norm.weight", [64], 0, 32 * 12)]
    write("gguf_header", "llama_tensors.gguf", gguf(llama_kvs() + TOKENIZER, tensors, data=b"\1" * 1024))
    write("gguf_header", "alignment_64.gguf",
          gguf(llama_kvs() + [("general.alignment", U32, 64)], [("a", [4, 4], 1, 0), ("b", [8], 1, 64)],
               alignment=64, data=b"\2" * 256))
    every = [("t.u8", U8, 7), ("t.i8", I8, -7), ("t.u16", U16, 700), ("t.i16", I16, -700),
             ("t.u32", U32, 70000), ("t.i32", I32, -70000), ("t.f32", F32, 0.5), ("t.bool", BOOL, True),
             ("t.str", STR, "h\u00e9llo"), ("t.u64", U64, 1 << 40), ("t.i64", I64, -(1 << 40)), ("t.f64", F64, 2.25)]
    arrays = [(f"t.arr{kind}", ARR, (kind, [v] * 3)) for (_, kind, v) in every]
    write("gguf_header", "every_type.gguf", gguf([("general.architecture", STR, "test")] + every + arrays))
    write("gguf_header", "moe.gguf", gguf(llama_kvs("qwen3moe", expert_count=(U32, 8), expert_used_count=(U32, 2),
                                                    expert_feed_forward_length=(U32, 32))))
    write("gguf_header", "per_layer_heads.gguf",
          gguf(llama_kvs("qwen3next", layers=3, expert_count=(U32, 4), expert_used_count=(U32, 1))
               + [("qwen3next.attention.head_count_kv", ARR, (U32, [2, 0, 1]))]))
    write("gguf_header", "recurrent.gguf",
          gguf([("general.architecture", STR, "mamba"), ("mamba.block_count", U32, 2),
                ("mamba.embedding_length", U32, 64), ("mamba.ssm.conv_kernel", U32, 4),
                ("mamba.ssm.state_size", U32, 16), ("mamba.attention.head_count", U32, 0)]))
    write("gguf_header", "swa_and_scaling.gguf",
          gguf(llama_kvs("gemma2", **{"attention.key_length": (U32, 16), "attention.value_length": (U32, 16),
                                      "attention.sliding_window": (U32, 512), "rope.scaling.factor": (F32, 2.0),
                                      "attn_logit_softcapping": (F32, 50.0), "final_logit_softcapping": (F32, 30.0),
                                      "nextn_predict_layers": (U32, 1), "expert_group_count": (U32, 0)})))
    # Hostile values corral's checks refuse (starting points for the mutator).
    write("gguf_header", "bad_heads.gguf", gguf(llama_kvs(**{"attention.head_count_kv": (U32, 3)})))
    write("gguf_header", "nan_epsilon.gguf", gguf(llama_kvs(**{"attention.layer_norm_epsilon": (F32, float("nan"))})))
    write("gguf_header", "truncated.gguf", gguf(llama_kvs() + TOKENIZER)[:150])


# ---------------------------------------------------------------------------------------------
# chat_template: every conformance template with one of its cases, and a few hostile ones.

def openai_messages(messages):
    out = []
    for m in messages:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [{"id": c["id"], "type": "function",
                                "function": {"name": c["name"], "arguments": c["arguments"]}} for c in m["tool_calls"]]
        out.append(m)
    return out


def chat_template_seeds():
    cases = json.loads((TEMPLATES / "cases.json").read_text())
    rotation = ["parallel_tool_calls", "multi_turn", "tool_call_followup", "system_user",
                "tool_call_with_content", "multi_turn_assistant_last", "tools_user", "consecutive_user"]
    for i, template in enumerate(cases["templates"]):
        applicable = [c if isinstance(c, str) else c["case"] for c in template["cases"]]
        wanted = [c for c in rotation[i % len(rotation):] + rotation if c in applicable][0]
        case = cases["cases"][wanted]
        conversation = {"messages": openai_messages(case["messages"]),
                        "add_generation_prompt": case["add_generation_prompt"],
                        "bos_token": template["bos_token"], "eos_token": template["eos_token"]}
        if "tools" in case:
            conversation["tools"] = cases["tool_sets"][case["tools"]]
        source = (TEMPLATES / f"{template['name']}.jinja").read_bytes()
        write("chat_template", f"{template['name']}__{wanted}.bin",
              source + b"\0" + json.dumps(conversation, ensure_ascii=False).encode())
    hostile = {
        "range_loop": "{% for i in range(100000) %}{{ i }}{% endfor %}",
        "doubling_list": "{% set x = [1] %}{% for i in range(40) %}{% set x = x + x %}{% endfor %}{{ x|length }}",
        "doubling_string": "{% set s = 'ab' %}{% for i in range(40) %}{% set s = s + s %}{% endfor %}{{ s|length }}",
        "recursive_macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "nested_dicts": "{% set d = {} %}{% for i in range(1000) %}{% set d = {'a': d} %}{% endfor %}{{ d|tojson }}",
        "filters": "{{ messages|tojson(indent=2)|indent(4, first=true) }}{{ 'x'.split('')|join }}"
                   "{{ messages[0]['content'].strip().upper()|replace('A', 'b') * 3 }}{{ strftime_now('%d %B %Y') }}"
                   "{{ raise_exception('done') if messages|length > 9 }}",
        "namespace_loop": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                          "{{ loop.index }}/{{ ns.n }}:{{ m.role }}{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments.city }}{% endif %}"
                          "{% endfor %}{{ tools|map(attribute='function')|map(attribute='name')|join(',') }}",
    }
    for name, source in hostile.items():
        write("chat_template", f"hostile_{name}.bin", source.encode())  # no NUL: the default conversation


# ---------------------------------------------------------------------------------------------
# json_schema

SCHEMAS = {
    "object": {"type": "object"},
    "weather_args": {"type": "object", "properties": {"city": {"type": "string"},
                                                      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                     "required": ["city"], "additionalProperties": False},
    "bounded_numbers": {"type": "object", "properties": {
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "p": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 100}}},
    "array_items": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 8},
                    "minItems": 1, "maxItems": 4},
    "refs_defs": {"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"},
                                                                      "v": {"type": "integer"}}}},
                  "$ref": "#/$defs/node"},
    "one_any_all": {"oneOf": [{"type": "string"}, {"type": "null"}],
                    "anyOf": [{"const": 1}, {"enum": [2, 3]}], "allOf": [{"type": "object"}]},
    "pattern_format": {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+(\\.[a-z]*)?$"},
        "when": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"}}},
    "tuple_prefix": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False},
    "pattern_props": {"type": "object", "patternProperties": {"^x-": {"type": "string"}},
                      "additionalProperties": {"type": "number", "minimum": 0.5}},
    "boolean_true": True,
    # Regression: bounds past i64 overflowed corral's integer range arithmetic (crate::chat::schema).
    "huge_bounds": {"type": "object", "properties": {
        "a": {"type": "number", "exclusiveMinimum": 1e100}, "b": {"type": "number", "maximum": -1e300}}},
}


def json_schema_seeds():
    for name, schema in SCHEMAS.items():
        write("json_schema", f"{name}.json", json.dumps(schema, indent=1))


# ---------------------------------------------------------------------------------------------
# tool_calls

HERMES, LLAMA3, MISTRAL, GENERIC = range(4)


def selector(fmt, chunk):
    return bytes([((chunk - 1) << 2) | fmt])


TOOL_OUTPUTS = {
    "hermes_one": (HERMES, 3, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Z\u00fcrich"}}\n</tool_call>'),
    "hermes_two_with_text": (HERMES, 1, 'Let me check.\n<tool_call>{"name": "a", "arguments": {"x": [1, {"y": "}"}]}}</tool_call>'
                                        '<tool_call>{"name": "b", "arguments": "{\\"q\\": 1}"}</tool_call> done'),
    "hermes_cut_off": (HERMES, 64, '<tool_call>{"name": "get_weather", "arguments": {"city": "Par'),
    "llama3_bare": (LLAMA3, 5, '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}'),
    "llama3_python_tag": (LLAMA3, 2, '<|python_tag|>{"name": "search_web", "parameters": {"query": "rhine"}}; '
                                     '{"name": "get_weather", "parameters": {}}'),
    "mistral_list": (MISTRAL, 4, '[TOOL_CALLS][{"name": "a", "arguments": {"k": "v"}}, {"name": "b", "arguments": {}}]'),
    "mistral_bare_list": (MISTRAL, 64, ' [{"name": "a", "arguments": {"n": -1.5e3, "t": true, "z": null}}]'),
    "generic_call": (GENERIC, 7, '{"name": "get_weather", "arguments": {"city": "\u6771\u4eac"}}'),
    "generic_text": (GENERIC, 64, 'The capital of Switzerland is Bern. {"name": "not_a_call"}'),
    "plain_text_hermes": (HERMES, 1, 'Hello <tool_ there </tool_call> <tool_call'),
    "tool_choice": (GENERIC, 64, 'required'),
    "tool_specs": (GENERIC, 64, json.dumps([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"name": "bare", "description": "a bare function object"}])),
}


def tool_calls_seeds():
    for name, (fmt, chunk, text) in TOOL_OUTPUTS.items():
        write("tool_calls", f"{name}.bin", selector(fmt, chunk) + text.encode())


# ---------------------------------------------------------------------------------------------
# c_json

def c_json_seeds():
    cases = json.loads((TEMPLATES / "cases.json").read_text())
    for name in ["user", "system_user", "multi_turn", "tool_call_followup", "parallel_tool_calls"]:
        case = cases["cases"][name]
        messages = json.dumps(openai_messages(case["messages"]), ensure_ascii=False).encode()
        tools = case.get("tools")
        data = messages + (b"\0" + json.dumps(cases["tool_sets"][tools], ensure_ascii=False).encode() if tools else b"")
        write("c_json", f"{name}.json", data)
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
             {"role": "assistant", "content": None,
              "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}},
                             {"type": "function", "function": {"name": "g"}}]},
             {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "ok"}]
    write("c_json", "content_parts_object_arguments.json",
          json.dumps(parts).encode() + b"\0" + json.dumps([{"name": "f"}, {"name": "g", "parameters": None}]).encode())


if __name__ == "__main__":
    for target in ["gguf_header", "chat_template", "json_schema", "tool_calls", "c_json"]:
        shutil.rmtree(CORPUS / target, ignore_errors=True)
    gguf_seeds()
    chat_template_seeds()
    json_schema_seeds()
    tool_calls_seeds()
    c_json_seeds()
    for folder in sorted(CORPUS.iterdir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")
