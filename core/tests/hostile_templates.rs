//! Chat templates are untrusted input (they come inside model files): a template that loops,
//! grows a value or its output without bound gets `template_error` naming the limit, quickly
//! and without exhausting memory. Its own test binary, so that peak RSS is this test's.

#[path = "support/models.rs"]
mod models;

use std::time::{Duration, Instant};

use corral::{ChatTemplate, ErrorKind, Message};
use models::proc_status_kb;

/// Templates an attacker could put in a GGUF: each would run for minutes, or take gigabytes,
/// or kill the process, without the render's bounds.
const HOSTILE: &[(&str, &str)] = &[
    ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    ("three nested loops", "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}"),
    ("huge output", "{% for i in range(10000) %}{% for j in range(10000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}"),
    ("string doubled", "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
    ("string doubled with +", "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"),
    ("list doubled", "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"),
    ("list doubled and joined", "{% set ns = namespace(l=['abc']) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join(',') }}"),
    ("repeat", "{% for i in range(1000) %}{% set x = 'a' * 90000000 %}{% endfor %}"),
    ("replace squares", "{% set ns = namespace(s='aaaa') %}{% for i in range(30) %}{% set ns.s = ns.s|replace('a', ns.s) %}{% endfor %}{{ ns.s|length }}"),
    ("captured output", "{% macro d(n) %}{% if n > 0 %}{{ d(n - 1) }}{{ d(n - 1) }}{% else %}xxxxxxxxxxxxxxxx{% endif %}{% endmacro %}{% set x = d(40) %}{{ x|length }}"),
    ("set block", "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set block %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = block %}{% endfor %}"),
    ("deep recursion", "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}"),
    ("center", "{{ 'x'.center(2000000000) }}"),
    ("ljust in a loop", "{% for i in range(100000) %}{{ 'x'.ljust(100000) }}{% endfor %}"),
    ("indent", "{{ 'a\nb'|indent(2000000000) }}"),
    ("tojson indent", "{{ [[[[1]]]]|tojson(indent=1000000000) }}"),
    ("format", "{% for i in range(100000) %}{{ '%s%s%s'|format('x' * 1000000, 'y', 'z') }}{% endfor %}"),
    ("dict growth", "{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% for j in range(100000) %}{% set ns.d = {'k': ns.d} %}{% endfor %}{% endfor %}"),
    ("sort of a huge list", "{% set ns = namespace(l=[3, 1, 2]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|sort|first }}"),
    ("raw text in a loop", concat!("{% for i in range(100000) %}{% raw %}", include_str!("data/chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja"), "{% endraw %}{% endfor %}")),
    ("message content doubled", "{% set ns = namespace(s=messages[0].content) %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
];

#[test]
fn each_hostile_template_is_a_template_error_within_a_second_and_bounded_memory() {
    let messages = [Message::new("user", "Hello there, how are you?")];
    let mut slowest = Duration::ZERO;
    let skip = std::env::var("CORRAL_SKIP").unwrap_or_default();
    for (name, source) in HOSTILE {
        if !skip.is_empty() && skip.split(',').any(|s| s == *name) {
            continue;
        }
        let started = Instant::now();
        let result = ChatTemplate::new(source, "<s>".into(), "</s>".into()).and_then(|t| t.render(&messages, true, &[]));
        let took = started.elapsed();
        slowest = slowest.max(took);
        let err = result.expect_err(&format!("{name}: a hostile template must fail"));
        assert_eq!(err.kind(), ErrorKind::TemplateError, "{name}: {err}");
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
        let peak = proc_status_kb("VmHWM") / 1024;
        assert!(peak < 450, "{name}: peak RSS {peak} MB");
        eprintln!("{name}: {took:?}, peak RSS {peak} MB: {}", err.message());
    }
    eprintln!("slowest: {slowest:?}");
}

#[test]
fn the_limits_are_named() {
    let messages = [Message::new("user", "Hi")];
    let render = |source: &str| ChatTemplate::new(source, String::new(), String::new()).unwrap().render(&messages, true, &[]).unwrap_err();
    assert!(render(HOSTILE[0].1).message().contains("budget"), "loops: fuel");
    let capped = ChatTemplate::new("{% for i in range(100000) %}0123456789{% endfor %}", String::new(), String::new())
        .unwrap()
        .with_max_prompt_bytes(10_000);
    let err = capped.render(&messages, true, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TemplateError);
    assert!(err.message().contains("10000 bytes"), "{}", err.message());
}

/// The budget grows with the input: a long conversation through a template that copies it a
/// few times (as real templates do) still renders.
#[test]
fn long_conversations_still_render() {
    let source = "{% set ns = namespace(p='') %}{% for m in messages %}{% set ns.p = ns.p ~ '<|' ~ m.role ~ '|>' ~ m.content ~ '\n' %}{% endfor %}{{ ns.p }}";
    let template = ChatTemplate::new(source, String::new(), String::new()).unwrap();
    let messages: Vec<Message> =
        (0..100).map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, "word ".repeat(400))).collect();
    let prompt = template.render(&messages, true, &[]).unwrap();
    assert!(prompt.len() > 100 * 2000);
}

/// How long a real template takes to render a short conversation (printed, not asserted).
#[test]
fn rendering_a_real_template_is_quick() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chat_templates/Qwen-Qwen3-0.6B.jinja")).unwrap();
    let template = ChatTemplate::new(&source, String::new(), String::new()).unwrap();
    let messages: Vec<Message> =
        (0..10).map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, "Hello there, how are you today?")).collect();
    let started = Instant::now();
    for _ in 0..200 {
        template.render(&messages, true, &[]).unwrap();
    }
    eprintln!("Qwen3 template, 10 messages: {:?} per render", started.elapsed() / 200);
}
