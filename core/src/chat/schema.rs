//! JSON schema to GBNF. llama.cpp's json-schema-to-grammar does the work; corral adds what it
//! leaves out: bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`) on
//! non-integer numbers, which it ignores. Each bounded number is swapped for a placeholder
//! constant before conversion, and the placeholder for a rule of corral's own afterwards.
//!
//! That rule accepts integers in the range and decimals whose integer part keeps every
//! fraction inside it (e.g. 89.x for a maximum of 90, not 90.x): a subset of the valid numbers,
//! so everything generated validates, without exponents.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// Compiles a JSON schema (JSON text) to GBNF.
pub(crate) fn json_schema_grammar(schema: &str) -> Result<String> {
    let mut parsed: Value = serde_json::from_str(schema)
        .map_err(|e| Error::new(ErrorKind::InvalidGrammar, format!("the JSON schema is not valid JSON: {e}")))?;
    if !parsed.is_object() && !parsed.is_boolean() {
        return Err(Error::new(ErrorKind::InvalidGrammar, "a JSON schema must be an object"));
    }
    let mut numbers = Vec::new();
    replace_bounded_numbers(&mut parsed, &mut numbers)?;
    crate::log::clear_last_llama_error();
    let mut grammar = llama_cpp_2::json_schema_to_grammar(&parsed.to_string()).map_err(|e| {
        let detail = crate::log::take_last_llama_error().unwrap_or_else(|| e.to_string());
        Error::new(ErrorKind::InvalidGrammar, format!("unsupported JSON schema: {detail}"))
    })?;
    for (i, range) in numbers.iter().enumerate() {
        let rule = format!("corral-number-{i}");
        grammar = grammar.replace(&format!("\"\\\"{}\\\"\"", placeholder(i)), &rule);
        grammar.push_str(&format!("\n{rule} ::= {}", range.gbnf()?));
    }
    Ok(grammar)
}

fn placeholder(i: usize) -> String {
    format!("__corral_number_{i}__")
}

/// Walks the schema, replacing every bounded `{"type": "number"}` with a placeholder `const`.
fn replace_bounded_numbers(value: &mut Value, found: &mut Vec<NumberRange>) -> Result<()> {
    match value {
        Value::Object(map) => {
            if let Some(range) = NumberRange::of(map)? {
                found.push(range);
                let mut replacement = Map::new();
                replacement.insert("const".into(), Value::String(placeholder(found.len() - 1)));
                *map = replacement;
                return Ok(());
            }
            for (key, child) in map.iter_mut() {
                // Values under these keys are data, not schemas.
                if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                    replace_bounded_numbers(child, found)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| replace_bounded_numbers(item, found)),
        _ => Ok(()),
    }
}

/// The bounds of one `{"type": "number", ...}` schema.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NumberRange {
    min: Option<(f64, bool)>,
    max: Option<(f64, bool)>,
}

/// Integer parts beyond this are not generated (15 digits keep f64 exact).
const LIMIT: i64 = 999_999_999_999_999;

impl NumberRange {
    /// `Some` for a number schema with bounds; `None` for anything else.
    fn of(map: &Map<String, Value>) -> Result<Option<NumberRange>> {
        if map.get("type").and_then(Value::as_str) != Some("number") {
            return Ok(None);
        }
        let bound = |key: &str| -> Result<Option<f64>> {
            match map.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(Some)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidGrammar, format!("\"{key}\" must be a number, got {v}"))),
            }
        };
        let pick = |inclusive: Option<f64>, exclusive: Option<f64>, tighter: fn(f64, f64) -> bool| match (inclusive, exclusive) {
            (Some(i), Some(e)) if tighter(e, i) || e == i => Some((e, true)),
            (Some(i), _) => Some((i, false)),
            (None, Some(e)) => Some((e, true)),
            (None, None) => None,
        };
        let min = pick(bound("minimum")?, bound("exclusiveMinimum")?, |a, b| a > b);
        let max = pick(bound("maximum")?, bound("exclusiveMaximum")?, |a, b| a < b);
        if min.is_none() && max.is_none() {
            return Ok(None);
        }
        Ok(Some(NumberRange { min, max }))
    }

    /// Smallest and largest allowed integers.
    fn integer_bounds(&self) -> (i64, i64) {
        let lo = match self.min {
            None => -LIMIT,
            Some((m, false)) => m.ceil() as i64,
            Some((m, true)) => (m.floor() as i64).saturating_add(1),
        };
        let hi = match self.max {
            None => LIMIT,
            Some((m, false)) => m.floor() as i64,
            Some((m, true)) => (m.ceil() as i64).saturating_sub(1),
        };
        (lo.max(-LIMIT), hi.min(LIMIT))
    }

    fn gbnf(&self) -> Result<String> {
        let (lo, hi) = self.integer_bounds();
        let min = self.min.map_or(-(LIMIT as f64), |(m, _)| m);
        let max = self.max.map_or(LIMIT as f64, |(m, _)| m);
        let mut alternatives = Vec::new();
        if lo <= hi {
            alternatives.push(int_range(lo, hi));
        }
        const FRACTION: &str = "\".\" [0-9]{1,15}";
        // "k.f" lies in (k, k+1): inside the range when k >= min and k + 1 <= max.
        let (pos_lo, pos_hi) = ((min.ceil() as i64).max(0), (max.floor() as i64).saturating_sub(1).min(LIMIT));
        if pos_lo <= pos_hi {
            alternatives.push(format!("{} {FRACTION}", uint_range(pos_lo as u64, pos_hi as u64)));
        }
        // "-k.f" lies in (-(k+1), -k): inside when -(k+1) >= min and -k <= max.
        let (neg_lo, neg_hi) = ((-max).ceil().max(0.0) as i64, ((-min).floor() as i64).saturating_sub(1).min(LIMIT));
        if neg_lo <= neg_hi {
            alternatives.push(format!("\"-\" {} {FRACTION}", uint_range(neg_lo as u64, neg_hi as u64)));
        }
        if alternatives.is_empty() {
            return Err(Error::new(ErrorKind::InvalidGrammar, format!("no number satisfies the bounds {self:?}")));
        }
        Ok(format!("({})", alternatives.join(" | ")))
    }
}

/// GBNF for the integers in [lo, hi].
fn int_range(lo: i64, hi: i64) -> String {
    let mut parts = Vec::new();
    if hi >= 0 {
        parts.push(uint_range(lo.max(0) as u64, hi as u64));
    }
    if lo < 0 {
        parts.push(format!("\"-\" {}", uint_range(hi.min(-1).unsigned_abs(), lo.unsigned_abs())));
    }
    format!("({})", parts.join(" | "))
}

/// GBNF for the unsigned integers in [lo, hi], without leading zeros.
fn uint_range(lo: u64, hi: u64) -> String {
    let mut parts = Vec::new();
    let digits = |n: u64| n.to_string().len();
    for len in digits(lo)..=digits(hi) {
        let first = if len == 1 { 0 } else { 10u64.pow(len as u32 - 1) };
        let last = 10u64.pow(len as u32) - 1;
        let (a, b) = (lo.max(first), hi.min(last));
        if a <= b {
            parts.push(same_length_range(&a.to_string(), &b.to_string()));
        }
    }
    format!("({})", parts.join(" | "))
}

/// GBNF for the numbers between two digit strings of the same length.
fn same_length_range(a: &str, b: &str) -> String {
    let (a0, b0) = (a.as_bytes()[0] - b'0', b.as_bytes()[0] - b'0');
    let rest = a.len() - 1;
    if rest == 0 {
        return format!("[{a0}-{b0}]");
    }
    let (a_rest, b_rest) = (&a[1..], &b[1..]);
    if a0 == b0 {
        return format!("\"{a0}\" {}", same_length_range(a_rest, b_rest));
    }
    let any = |n: usize| format!("[0-9]{{{n}}}");
    if a_rest.bytes().all(|d| d == b'0') && b_rest.bytes().all(|d| d == b'9') {
        return format!("[{a0}-{b0}] {}", any(rest));
    }
    let mut parts = vec![format!("\"{a0}\" {}", same_length_range(a_rest, &"9".repeat(rest)))];
    if a0 + 1 < b0 {
        parts.push(format!("[{}-{}] {}", a0 + 1, b0 - 1, any(rest)));
    }
    parts.push(format!("\"{b0}\" {}", same_length_range(&"0".repeat(rest), b_rest)));
    format!("({})", parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidates the rule for `range` accepts (its GBNF is also a regex once quotes and
    /// spaces are dropped and the decimal point is escaped).
    fn numbers_in(range: NumberRange, candidates: &[&str]) -> Vec<String> {
        let re = range.gbnf().unwrap().replace('"', "").replace(' ', "").replace('.', "\\.");
        candidates.iter().filter(|c| simple_regex::matches(&re, c)).map(|c| c.to_string()).collect()
    }

    mod simple_regex {
        //! A whole-string matcher for the regex subset the rules use: literals, `\.`, `[a-b]`,
        //! `{n}`, `{m,n}`, groups with `|`.
        pub fn matches(re: &str, text: &str) -> bool {
            let re: Vec<char> = re.chars().collect();
            let text: Vec<char> = text.chars().collect();
            let (alts, _) = parse_alt(&re, 0);
            match_node(&alts, &text, 0).contains(&text.len())
        }

        #[derive(Debug, Clone)]
        enum Node {
            Char(char),
            Class(char, char),
            Group(Vec<Vec<(Node, usize, usize)>>),
        }

        type Seq = Vec<(Node, usize, usize)>;

        fn parse_alt(re: &[char], mut i: usize) -> (Vec<Seq>, usize) {
            let mut alts = vec![Vec::new()];
            while i < re.len() {
                let node = match re[i] {
                    ')' => return (alts, i + 1),
                    '|' => {
                        alts.push(Vec::new());
                        i += 1;
                        continue;
                    }
                    '(' => {
                        let (inner, next) = parse_alt(re, i + 1);
                        i = next;
                        Node::Group(inner)
                    }
                    '[' => {
                        let node = Node::Class(re[i + 1], re[i + 3]);
                        i += 5;
                        node
                    }
                    '\\' => {
                        i += 2;
                        Node::Char(re[i - 1])
                    }
                    c => {
                        i += 1;
                        Node::Char(c)
                    }
                };
                let (mut min, mut max) = (1, 1);
                if i < re.len() && re[i] == '{' {
                    let end = re[i..].iter().position(|&c| c == '}').unwrap() + i;
                    let spec: String = re[i + 1..end].iter().collect();
                    let mut bounds = spec.split(',').map(|n| n.parse::<usize>().unwrap());
                    min = bounds.next().unwrap();
                    max = bounds.next().unwrap_or(min);
                    i = end + 1;
                }
                alts.last_mut().unwrap().push((node, min, max));
            }
            (alts, i)
        }

        fn match_node(alts: &[Seq], text: &[char], at: usize) -> Vec<usize> {
            alts.iter().flat_map(|seq| match_seq(seq, text, at)).collect()
        }

        fn match_seq(seq: &[(Node, usize, usize)], text: &[char], at: usize) -> Vec<usize> {
            let Some(((node, min, max), rest)) = seq.split_first() else { return vec![at] };
            let mut ends = Vec::new();
            let mut positions = vec![at];
            for count in 0..=*max {
                if count >= *min {
                    for &p in &positions {
                        ends.extend(match_seq(rest, text, p));
                    }
                }
                positions = positions.iter().flat_map(|&p| match_one(node, text, p)).collect();
                positions.sort();
                positions.dedup();
                if positions.is_empty() {
                    break;
                }
            }
            ends
        }

        fn match_one(node: &Node, text: &[char], at: usize) -> Vec<usize> {
            match node {
                Node::Char(c) => (text.get(at) == Some(c)).then_some(at + 1).into_iter().collect(),
                Node::Class(a, b) => text.get(at).filter(|c| (*a..=*b).contains(c)).map(|_| at + 1).into_iter().collect(),
                Node::Group(alts) => match_node(alts, text, at),
            }
        }
    }

    #[test]
    fn bounded_numbers_stay_in_range() {
        let lat = NumberRange { min: Some((-90.0, false)), max: Some((90.0, false)) };
        let candidates = ["-90", "90", "0", "-0.5", "89.99", "90.5", "-90.1", "91", "-91", "45.25", "100", "-89.9"];
        assert_eq!(numbers_in(lat, &candidates), ["-90", "90", "0", "-0.5", "89.99", "45.25", "-89.9"]);
        let open = NumberRange { min: Some((0.0, true)), max: Some((1.0, true)) };
        assert_eq!(numbers_in(open, &["0", "1", "0.5", "0.0001", "1.5"]), ["0.5", "0.0001"]);
        let from = NumberRange { min: Some((2.5, false)), max: None };
        assert_eq!(numbers_in(from, &["2", "3", "3.7", "2.5", "123456", "-1"]), ["3", "3.7", "123456"]);
    }

    #[test]
    fn bounds_beyond_i64_have_no_numbers() {
        // Found by fuzz/ (json_schema): `as i64` saturates, and the +1/-1 after it overflowed.
        for (min, max) in
            [(Some((1e300, true)), None), (Some((1e300, false)), None), (None, Some((-1e300, true))), (None, Some((-1e300, false)))]
        {
            assert!(NumberRange { min, max }.gbnf().is_err(), "{min:?} {max:?}");
        }
        let wide = NumberRange { min: Some((-1e300, true)), max: Some((1e300, true)) };
        assert_eq!(wide.integer_bounds(), (-LIMIT, LIMIT));
    }

    #[test]
    fn integer_ranges_are_exact() {
        for (lo, hi) in [(0u64, 9u64), (7, 123), (10, 99), (95, 1005), (0, 0), (300, 300)] {
            let expr = uint_range(lo, hi).replace('"', "").replace(' ', "");
            for n in 0..1200u64 {
                let inside = (lo..=hi).contains(&n);
                assert_eq!(simple_regex::matches(&expr, &n.to_string()), inside, "{n} in [{lo}, {hi}]: {expr}");
            }
        }
    }
}
