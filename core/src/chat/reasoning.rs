//! Reasoning ("thinking") apart from the answer: models such as Qwen3, QwQ and DeepSeek-R1
//! write `<think>...</think>` before they answer. A reply that starts with `<think>` (or whose
//! prompt already opened one, as DeepSeek-R1's template does) has its reasoning split off, as it
//! streams: results carry it as `reasoning` (OpenAI-compatible servers' `reasoning_content`).

pub(crate) const OPEN: &str = "<think>";
pub(crate) const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet known whether the reply starts with `<think>`.
    Start,
    Reasoning,
    /// Past `</think>`; `fresh`: the answer's leading white space is still dropped.
    Answer {
        fresh: bool,
    },
}

/// Splits streamed text into reasoning and answer.
#[derive(Debug, Clone)]
pub(crate) struct ReasoningSplitter {
    state: State,
    /// Text held back: it may still turn out to be (part of) a tag.
    held: String,
}

/// The longest suffix of `text` that is a proper prefix of `tag`.
fn partial_tag_len(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

impl ReasoningSplitter {
    /// `opened`: the prompt ends inside a `<think>` block, so the reply starts as reasoning.
    pub(crate) fn new(opened: bool) -> Self {
        ReasoningSplitter { state: if opened { State::Reasoning } else { State::Start }, held: String::new() }
    }

    /// Whether a rendered prompt leaves a `<think>` block open for the reply.
    pub(crate) fn prompt_opens_reasoning(prompt: &str) -> bool {
        let prompt = prompt.trim_end();
        prompt.ends_with(OPEN) && !prompt.ends_with(&format!("{CLOSE}{OPEN}"))
    }

    /// The next piece of text: (reasoning, answer).
    pub(crate) fn push(&mut self, text: &str) -> (String, String) {
        self.held.push_str(text);
        let (mut reasoning, mut answer) = (String::new(), String::new());
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if trimmed.starts_with(OPEN) {
                        self.held = trimmed[OPEN.len()..].to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(trimmed) {
                        break; // could still become `<think>`
                    } else {
                        self.state = State::Answer { fresh: false };
                    }
                }
                State::Reasoning => {
                    if let Some(end) = self.held.find(CLOSE) {
                        reasoning.push_str(&self.held[..end]);
                        self.held.drain(..end + CLOSE.len());
                        self.state = State::Answer { fresh: true };
                    } else {
                        let keep = partial_tag_len(&self.held, CLOSE);
                        reasoning.extend(self.held.drain(..self.held.len() - keep));
                        break;
                    }
                }
                State::Answer { fresh } => {
                    if fresh {
                        let rest = self.held.trim_start().to_string();
                        self.held = rest;
                        if self.held.is_empty() {
                            break;
                        }
                        self.state = State::Answer { fresh: false };
                    }
                    answer.push_str(&self.held);
                    self.held.clear();
                    break;
                }
            }
        }
        (reasoning, answer)
    }

    /// What is still held back, at the end of the reply: (reasoning, answer).
    pub(crate) fn finish(&mut self) -> (String, String) {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Reasoning => (held, String::new()),
            State::Start | State::Answer { .. } => (String::new(), held),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one by one and returns the whole (reasoning, answer).
    fn split(opened: bool, pieces: &[&str]) -> (String, String) {
        let mut s = ReasoningSplitter::new(opened);
        let (mut r, mut a) = (String::new(), String::new());
        for piece in pieces {
            let (pr, pa) = s.push(piece);
            r.push_str(&pr);
            a.push_str(&pa);
        }
        let (pr, pa) = s.finish();
        (r + &pr, a + &pa)
    }

    #[test]
    fn think_blocks_are_split_however_the_text_is_cut() {
        let text = "<think>\nAdd 2 and 2.\n</think>\n\nFour.";
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(split(false, &[a, b]), ("\nAdd 2 and 2.\n".into(), "Four.".into()), "cut at {cut}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(false, &pieces), ("\nAdd 2 and 2.\n".into(), "Four.".into()));
    }

    #[test]
    fn replies_without_reasoning_pass_through() {
        assert_eq!(split(false, &["Four", "."]), (String::new(), "Four.".into()));
        assert_eq!(split(false, &["<thi", "s is not a tag"]), (String::new(), "<this is not a tag".into()));
        assert_eq!(split(false, &["<", "/think> odd"]), (String::new(), "</think> odd".into()));
        assert_eq!(split(false, &["  <think>x</think>y"]), ("x".into(), "y".into()));
        assert_eq!(split(false, &["<th"]), (String::new(), "<th".into()));
    }

    #[test]
    fn an_opened_prompt_starts_in_reasoning_and_unclosed_reasoning_stays_reasoning() {
        assert_eq!(split(true, &["plan", "</think>", "answer"]), ("plan".into(), "answer".into()));
        assert_eq!(split(false, &["<think>never closed </th"]), ("never closed </th".into(), String::new()));
        assert!(ReasoningSplitter::prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
        assert!(!ReasoningSplitter::prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        assert!(!ReasoningSplitter::prompt_opens_reasoning("<|im_start|>assistant\n"));
    }

    #[test]
    fn multibyte_text_near_tags_is_safe() {
        assert_eq!(split(false, &["<think>é</", "think>ü"]), ("é".into(), "ü".into()));
        assert_eq!(split(true, &["ééé<", "/thinkX"]), ("ééé</thinkX".into(), String::new()));
    }
}
