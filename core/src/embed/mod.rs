//! Embeddings and reranking: `Model::embed` turns texts into vectors, `Model::rerank` scores
//! documents against a query. Both run on the model's embedding engine (engine/embed.rs),
//! batched across calls; this module checks the inputs, tokenizes on the caller's thread and
//! shapes the results.

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use llama_cpp_2::token::LlamaToken;

use crate::engine::embed::EmbedRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use crate::stream::CancelHandle;

/// How a text's token vectors become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// The mean of every token's vector.
    Mean,
    /// The first token's vector (BERT's `[CLS]`).
    Cls,
    /// The last token's vector (causal embedding models).
    Last,
    /// A reranker's classification head over the joined query and document.
    Rank,
}

impl Pooling {
    pub const ALL: [Pooling; 4] = [Pooling::Mean, Pooling::Cls, Pooling::Last, Pooling::Rank];

    /// The name bindings use: `mean`, `cls`, `last`, `rank`.
    pub const fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }

    /// The pooling `embed` takes by this name: `mean`, `cls` or `last` (`rank` belongs to
    /// `rerank`).
    pub fn from_name(name: &str) -> Result<Pooling> {
        match Pooling::ALL.into_iter().find(|p| p.name() == name) {
            Some(Pooling::Rank) => Err(rank_is_for_rerank()),
            Some(pooling) => Ok(pooling),
            None => Err(Error::invalid_argument(format!("pooling must be one of mean, cls, last; got {name:?}"))),
        }
    }

    /// The pooling a GGUF declares in `<arch>.pooling_type` (llama.cpp's numbering).
    fn from_gguf(value: u64) -> Option<Pooling> {
        match value {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            4 => Some(Pooling::Rank),
            _ => None,
        }
    }

    pub(crate) fn to_llama(self) -> llama_cpp_sys_2::llama_pooling_type {
        match self {
            Pooling::Mean => llama_cpp_sys_2::LLAMA_POOLING_TYPE_MEAN,
            Pooling::Cls => llama_cpp_sys_2::LLAMA_POOLING_TYPE_CLS,
            Pooling::Last => llama_cpp_sys_2::LLAMA_POOLING_TYPE_LAST,
            Pooling::Rank => llama_cpp_sys_2::LLAMA_POOLING_TYPE_RANK,
        }
    }
}

/// Options of one `embed` call.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Scale each vector to unit length (default true), as cosine similarity wants.
    pub normalize: bool,
    /// Cut texts longer than the model takes instead of failing with `context_overflow`.
    pub truncate: bool,
    /// Overrides the model's pooling (`None`: the GGUF's `pooling_type`, or mean for models
    /// that declare none, such as chat models).
    pub pooling: Option<Pooling>,
    /// Fails the call with `deadline_exceeded` when it runs longer.
    pub timeout: Option<Duration>,
    /// Cancels the call (it then fails with `cancelled`).
    pub cancel: Option<CancelHandle>,
}

fn rank_is_for_rerank() -> Error {
    Error::invalid_argument("rank pooling scores query-document pairs: use rerank")
}

fn check_timeout(timeout: Option<Duration>) -> Result<()> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(Error::invalid_argument("timeout must be positive"));
    }
    Ok(())
}

impl EmbedOptions {
    pub fn validate(&self) -> Result<()> {
        if self.pooling == Some(Pooling::Rank) {
            return Err(rank_is_for_rerank());
        }
        check_timeout(self.timeout)
    }
}

impl RerankOptions {
    pub fn validate(&self) -> Result<()> {
        if self.top_n == Some(0) {
            return Err(Error::invalid_argument("top_n must be at least 1"));
        }
        check_timeout(self.timeout)
    }
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { normalize: true, truncate: false, pooling: None, timeout: None, cancel: None }
    }
}

/// Options of one `rerank` call.
#[derive(Debug, Clone, Default)]
pub struct RerankOptions {
    /// Return only the best `top_n` documents (`None`: all of them).
    pub top_n: Option<usize>,
    /// Cut a query plus document longer than the model takes (the document loses its end)
    /// instead of failing with `context_overflow`.
    pub truncate: bool,
    pub timeout: Option<Duration>,
    pub cancel: Option<CancelHandle>,
}

/// The vectors of one `embed` call, one per text, in the order of the texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens evaluated, special tokens included (OpenAI's `usage.prompt_tokens`).
    pub prompt_tokens: u32,
}

/// One document's score; `rerank` returns them best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankResult {
    /// The document's position in the input.
    pub index: usize,
    /// Relevance in [0, 1].
    pub score: f32,
    pub document: String,
}

/// Most tokens of one text (or joined query and document) for a causal model. Every text sits
/// whole in one micro-batch, and llama.cpp computes and keeps a row of logits for every token
/// of it (1,024 tokens x a 49k vocabulary = 200 MB), so this bounds a chat model's embedding
/// context; decodes of many short texts stop at `CAUSAL_TOKENS_PER_DECODE`.
const MAX_CAUSAL_TOKENS: u32 = 1024;

/// Tokens one decode of a causal model packs (a longer text still goes, alone).
pub(crate) const CAUSAL_TOKENS_PER_DECODE: u32 = 512;

/// How long the longest text may be, in tokens: the loaded and the trained context, and for
/// causal models `MAX_CAUSAL_TOKENS`. This also sizes the embedding context's micro-batch.
pub(crate) fn max_tokens(info: &crate::model::ModelInfo) -> u32 {
    let limit = info.context_length.min(info.context_length_trained.max(1));
    if is_causal(info) {
        limit.min(MAX_CAUSAL_TOKENS)
    } else {
        limit
    }
}

/// Whether the model attends only backwards (every generation model); BERT-like encoders
/// say `<arch>.attention.causal = false`.
pub(crate) fn is_causal(info: &crate::model::ModelInfo) -> bool {
    let key = format!("{}.attention.causal", info.architecture);
    info.metadata.get(&key).and_then(|v| v.as_bool()).unwrap_or(true)
}

impl Model {
    /// One vector per text, batched: many texts share each decode, and concurrent calls and
    /// generations on this model share the cores. An empty list gives an empty result; an empty
    /// string is `invalid_argument` (it has no content to embed).
    pub fn embed(&self, texts: &[impl AsRef<str>], options: &EmbedOptions) -> Result<Embeddings> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        options.validate()?;
        // A reranker's own pooling scores pairs; its vectors are the mean of its tokens.
        let pooling = options.pooling.unwrap_or_else(|| self.declared_pooling().filter(|&p| p != Pooling::Rank).unwrap_or(Pooling::Mean));
        let max = self.embed_max_tokens();
        let mut batches = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            if text.is_empty() {
                return Err(Error::invalid_argument(format!("texts[{i}] is empty")));
            }
            let mut tokens = self.prompt_tokens(text, false)?;
            if tokens.len() > max {
                if !options.truncate {
                    return Err(too_long(format!("texts[{i}]"), tokens.len(), max));
                }
                truncate_keeping_end(&mut tokens, max, self.eos_token_id());
            }
            batches.push(tokens);
        }
        let prompt_tokens = batches.iter().map(Vec::len).sum::<usize>() as u32;
        let mut vectors = self.run_embed(batches, pooling, options.timeout, options.cancel.clone())?;
        if options.normalize {
            vectors.iter_mut().for_each(|v| normalize(v));
        }
        Ok(Embeddings { vectors, prompt_tokens })
    }

    /// Scores each document's relevance to `query`, in [0, 1], best first. Needs a reranker
    /// (a GGUF whose `pooling_type` is rank); other models fail with `unsupported`.
    pub fn rerank(&self, query: &str, documents: &[impl AsRef<str>], options: &RerankOptions) -> Result<Vec<RerankResult>> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        options.validate()?;
        if self.declared_pooling() != Some(Pooling::Rank) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{} is not a reranker (its GGUF declares no rank pooling)", self.info().name),
            ));
        }
        if query.is_empty() {
            return Err(Error::invalid_argument("the query is empty"));
        }
        let max = self.embed_max_tokens();
        let pairs = documents
            .iter()
            .enumerate()
            .map(|(i, document)| self.rerank_tokens(query, document.as_ref(), max, options.truncate).map_err(|e| at_document(e, i)))
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.run_embed(pairs, Pooling::Rank, options.timeout, options.cancel.clone())?;
        // Qwen3 rerankers end their graph in a softmax: their first output is already a
        // probability. Other heads give a logit.
        let normalized = matches!(self.info().architecture.as_str(), "qwen3" | "qwen3vl");
        let mut results: Vec<RerankResult> = outputs
            .into_iter()
            .zip(documents)
            .enumerate()
            .map(|(index, (output, document))| {
                let raw = output[0];
                let score = if normalized { raw } else { 1.0 / (1.0 + (-raw).exp()) };
                RerankResult { index, score, document: document.as_ref().to_string() }
            })
            .collect();
        results.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        if let Some(n) = options.top_n {
            results.truncate(n);
        }
        Ok(results)
    }

    /// The pooling the GGUF declares, if any.
    pub(crate) fn declared_pooling(&self) -> Option<Pooling> {
        let info = self.info();
        let key = format!("{}.pooling_type", info.architecture);
        info.metadata.get(&key).and_then(|v| v.as_u64()).and_then(Pooling::from_gguf)
    }

    fn embed_max_tokens(&self) -> usize {
        max_tokens(self.info()) as usize
    }

    fn eos_token_id(&self) -> Option<i32> {
        self.info().eos_token.as_ref().map(|t| t.id)
    }

    /// Query and document joined as the GGUF's `tokenizer.chat_template.rerank` says, or else
    /// as llama.cpp joins them: BOS query EOS SEP document EOS (each only where the
    /// tokenizer adds it).
    fn rerank_tokens(&self, query: &str, document: &str, max: usize, truncate: bool) -> Result<Vec<LlamaToken>> {
        if document.is_empty() {
            return Err(Error::invalid_argument("the document is empty"));
        }
        let info = self.info();
        if let Some(template) = info.metadata.get("tokenizer.chat_template.rerank").and_then(|v| v.as_str()) {
            let text = template.replace("{query}", query).replace("{document}", document);
            let tokens = self.prompt_tokens(&text, true)?;
            if tokens.len() > max {
                // The template puts text after the document: no sound place to cut.
                return Err(Error::new(
                    ErrorKind::ContextOverflow,
                    format!(
                        "the query and document are {} tokens in the reranker's template, more than the {max} it takes at once",
                        tokens.len()
                    ),
                ));
            }
            return Ok(tokens);
        }
        let special = self.special_tokens_for_pairs()?;
        let query_tokens = self.plain_tokens(query)?;
        let mut document_tokens = self.plain_tokens(document)?;
        let joined_len = |document_len: usize| special.len() + query_tokens.len() + document_len;
        if joined_len(document_tokens.len()) > max {
            let room = max.saturating_sub(joined_len(0));
            if room == 0 {
                return Err(Error::new(
                    ErrorKind::ContextOverflow,
                    format!(
                        "the query is {} tokens, leaving no room for a document in the {max} this model takes at once",
                        query_tokens.len()
                    ),
                ));
            }
            if !truncate {
                return Err(Error::new(
                    ErrorKind::ContextOverflow,
                    format!(
                        "the query and document are {} tokens, more than the {max} this model takes at once; pass truncate to cut the document",
                        joined_len(document_tokens.len())
                    ),
                ));
            }
            document_tokens.truncate(room);
        }
        let mut tokens = Vec::with_capacity(joined_len(document_tokens.len()));
        tokens.extend(special.bos);
        tokens.extend(query_tokens);
        tokens.extend(special.eos);
        tokens.extend(special.sep);
        tokens.extend(document_tokens);
        tokens.extend(special.eos);
        Ok(tokens)
    }

    fn plain_tokens(&self, text: &str) -> Result<Vec<LlamaToken>> {
        Ok(self.tokenize(text, false, false)?.into_iter().map(LlamaToken).collect())
    }

    fn run_embed(
        &self,
        texts: Vec<Vec<LlamaToken>>,
        pooling: Pooling,
        timeout: Option<Duration>,
        cancel: Option<CancelHandle>,
    ) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, results) = sync_channel(1);
        let request =
            EmbedRequest { texts, pooling, reply, cancel: cancel.unwrap_or_default(), deadline: timeout.map(|t| Instant::now() + t) };
        self.send_embed(request)?;
        results.recv().map_err(|_| Error::closed())?
    }
}

/// The special tokens around a query and a document, as the tokenizer adds them.
struct PairTokens {
    bos: Option<LlamaToken>,
    eos: Option<LlamaToken>,
    sep: Option<LlamaToken>,
}

impl PairTokens {
    fn len(&self) -> usize {
        self.bos.is_some() as usize + 2 * self.eos.is_some() as usize + self.sep.is_some() as usize
    }
}

impl Model {
    fn special_tokens_for_pairs(&self) -> Result<PairTokens> {
        let (bos, eos, sep) = crate::llama::vocab::pair_specials(&*self.llama()?);
        Ok(PairTokens { bos: bos.map(LlamaToken), eos: eos.map(LlamaToken), sep: sep.map(LlamaToken) })
    }
}

fn too_long(what: String, tokens: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::ContextOverflow,
        format!("{what} is {tokens} tokens, more than the {max} this model embeds at once; pass truncate to cut it"),
    )
}

fn at_document(e: Error, i: usize) -> Error {
    Error::new(e.kind(), format!("documents[{i}]: {}", e.message()))
}

/// Keeps the first `max` tokens, ending with the tokenizer's closing token (BERT's `[SEP]`)
/// where the text had one.
fn truncate_keeping_end(tokens: &mut Vec<LlamaToken>, max: usize, eos: Option<i32>) {
    let last = tokens.last().copied();
    tokens.truncate(max);
    if let (Some(last), Some(eos)) = (last, eos) {
        if last.0 == eos && max > 0 {
            tokens[max - 1] = last;
        }
    }
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_names_round_trip() {
        for p in [Pooling::Mean, Pooling::Cls, Pooling::Last] {
            assert_eq!(Pooling::from_name(p.name()).unwrap(), p);
        }
        assert!(Pooling::from_name("rank").unwrap_err().message().contains("use rerank"));
        assert_eq!(Pooling::from_name("max").unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn truncation_keeps_the_closing_token() {
        let mut tokens: Vec<LlamaToken> = [101, 5, 6, 7, 102].into_iter().map(LlamaToken).collect();
        truncate_keeping_end(&mut tokens, 3, Some(102));
        assert_eq!(tokens, [101, 5, 102].map(LlamaToken));
        let mut tokens: Vec<LlamaToken> = [1, 5, 6, 7].into_iter().map(LlamaToken).collect();
        truncate_keeping_end(&mut tokens, 2, Some(2));
        assert_eq!(tokens, [1, 5].map(LlamaToken));
    }

    #[test]
    fn normalized_vectors_have_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
