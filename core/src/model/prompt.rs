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

impl<'a> From<&'a str> for Prompt<'a> {
    fn from(text: &'a str) -> Self {
        Prompt::Text(text)
    }
}

impl<'a> From<&'a String> for Prompt<'a> {
    fn from(text: &'a String) -> Self {
        Prompt::Text(text)
    }
}

impl<'a> From<&'a [i32]> for Prompt<'a> {
    fn from(tokens: &'a [i32]) -> Self {
        Prompt::Tokens(tokens)
    }
}

impl<'a> From<&'a Vec<i32>> for Prompt<'a> {
    fn from(tokens: &'a Vec<i32>) -> Self {
        Prompt::Tokens(tokens)
    }
}

impl<'a> From<&'a [Message]> for Prompt<'a> {
    fn from(messages: &'a [Message]) -> Self {
        Prompt::Messages(messages)
    }
}

impl<'a> From<&'a Vec<Message>> for Prompt<'a> {
    fn from(messages: &'a Vec<Message>) -> Self {
        Prompt::Messages(messages)
    }
}
