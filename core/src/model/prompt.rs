//! What a model generates from: one type for models and sessions, in every binding.

use crate::chat::Message;

/// A prompt: raw text, token ids or a conversation.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// Raw text. The model's BOS is added when its vocabulary asks for one; special-token
    /// text is parsed as control tokens only with `GenerateOptions::parse_special`.
    Text(&'a str),
    /// Token ids, used as given (no BOS is added). Ids outside the vocabulary are an
    /// `invalid_argument` error.
    Tokens(&'a [i32]),
    /// A conversation, rendered by the chat template (the model's, or `options.template`);
    /// tool calls in the reply are parsed.
    Messages(&'a [Message]),
}

/// `From` for each borrowed form of each kind, so `generate("text")`, `generate(&tokens)` and
/// `generate(&messages)` all read naturally.
macro_rules! prompt_from {
    ($($source:ty => $kind:ident),* $(,)?) => {
        $(impl<'a> From<$source> for Prompt<'a> {
            fn from(value: $source) -> Self {
                Prompt::$kind(value)
            }
        })*
    };
}

prompt_from!(
    &'a str => Text,
    &'a String => Text,
    &'a [i32] => Tokens,
    &'a Vec<i32> => Tokens,
    &'a [Message] => Messages,
    &'a Vec<Message> => Messages,
);
