//! Choosing the next token from a decode's logits: llama.cpp's sampler chain, built from the
//! request's options; the grammar's fast path; plain greedy without copying the vocabulary;
//! log-probabilities.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::request::Active;
use crate::llama::context::Context;
use crate::options::GenerateOptions;
use crate::stream::{Logprob, TokenLogprob};

/// llama.cpp's LLAMA_DEFAULT_SEED: pick a random seed.
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// Samples the next token. With a grammar, llama.cpp's fast path: sample freely, keep the token
/// if the grammar accepts it, otherwise mask the whole vocabulary with the grammar and resample.
pub(super) fn sample(model: &LlamaModel, ctx: &Context<'_>, index: i32, active: &mut Active) -> LlamaToken {
    if active.grammar.is_none() && is_plain_greedy(&active.request.options) {
        // What llama.cpp's greedy sampler picks, without first copying the whole vocabulary
        // into a candidate array: with many sequences that copy is a visible part of a step.
        return LlamaToken(first_max_index(ctx.logits(index)) as i32);
    }
    let candidates = || {
        LlamaTokenDataArray::from_iter(
            ctx.logits(index).iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
            false,
        )
    };
    let Some(grammar) = active.grammar.as_mut() else {
        // What llama_sampler_sample does, except that no choice (NaN logits) ends the
        // generation instead of failing llama.cpp's assert.
        let mut all = candidates();
        active.sampler.apply(&mut all);
        let token = all.selected_token().unwrap_or_else(|| model.vocab().eos());
        active.sampler.accept(token);
        return token;
    };
    let mut free = candidates();
    active.sampler.apply(&mut free);
    if let Some(token) = free.selected_token() {
        let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
        grammar.apply(&mut single);
        if single.data[0].logit() > f32::NEG_INFINITY {
            grammar.accept(token);
            active.sampler.accept(token);
            return token;
        }
    }
    let mut constrained = candidates();
    grammar.apply(&mut constrained);
    active.sampler.apply(&mut constrained);
    // Nothing the grammar allows: end the generation.
    let token = constrained.selected_token().unwrap_or_else(|| model.vocab().eos());
    grammar.accept(token);
    active.sampler.accept(token);
    token
}

/// The chosen token's log-probability and the `top` most likely tokens, from raw logits.
pub(super) fn token_logprobs(model: &LlamaModel, logits: &[f32], token: LlamaToken, top: usize) -> Logprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = (logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>()).ln() as f32;
    let entry = |id: usize| {
        let id = id as i32;
        let text = String::from_utf8_lossy(&crate::llama::vocab::piece(model, LlamaToken(id), false).unwrap_or_default()).into_owned();
        TokenLogprob { token: id, text, logprob: logits.get(id as usize).map_or(f32::NEG_INFINITY, |&l| l - max - log_sum) }
    };
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(order.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(top);
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    } else {
        order.clear();
    }
    Logprob { token: entry(token.0 as usize), top: order.into_iter().map(entry).collect() }
}

pub(super) fn log_softmax_at(logits: &[f32], index: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let target = logits.get(index).copied().unwrap_or(f32::NEG_INFINITY);
    ((target - max) as f64 - sum.ln()) as f32
}

/// The index of the first largest value, as llama.cpp's greedy sampler chooses (a NaN is never
/// chosen unless it comes first). Eight running maxima, so that the compiler vectorises it.
pub(super) fn first_max_index(values: &[f32]) -> usize {
    const LANES: usize = 8;
    if values.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [0usize; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        for lane in 0..LANES {
            if chunk[lane] > best[lane] {
                best[lane] = chunk[lane];
                at[lane] = c * LANES + lane;
            }
        }
    }
    let (mut best_value, mut best_at) = (f32::NEG_INFINITY, 0);
    for lane in 0..LANES {
        if best[lane] > best_value || (best[lane] == best_value && at[lane] < best_at) {
            (best_value, best_at) = (best[lane], at[lane]);
        }
    }
    let tail_start = values.len() - tail.len();
    for (i, &v) in tail.iter().enumerate() {
        if v > best_value {
            (best_value, best_at) = (v, tail_start + i);
        }
    }
    best_at
}

fn has_penalties(o: &GenerateOptions) -> bool {
    o.repeat_penalty != 1.0 || o.frequency_penalty != 0.0 || o.presence_penalty != 0.0
}

/// Sampling that always takes the most likely token, whatever came before.
pub(super) fn is_plain_greedy(o: &GenerateOptions) -> bool {
    o.temperature <= 0.0 && !has_penalties(o)
}

pub(crate) fn build_sampler(model: &LlamaModel, o: &GenerateOptions) -> LlamaSampler {
    let mut chain = Vec::new();
    if has_penalties(o) {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            o.repeat_last_n as i32,
            o.repeat_penalty,
            o.frequency_penalty,
            o.presence_penalty,
        ));
    }
    if o.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if o.top_k > 0 {
            chain.push(LlamaSampler::top_k(o.top_k as i32));
        }
        if o.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(o.top_p, 1));
        }
        if o.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(o.min_p, 1));
        }
        chain.push(LlamaSampler::temp(o.temperature));
        chain.push(LlamaSampler::dist(o.seed.unwrap_or(RANDOM_SEED)));
    }
    LlamaSampler::chain_simple(chain)
}

#[cfg(test)]
mod tests {
    use super::first_max_index;

    /// llama.cpp's greedy choice: the first index whose value no later one exceeds.
    fn sequential(values: &[f32]) -> usize {
        let mut best = 0;
        for (i, &v) in values.iter().enumerate().skip(1) {
            if v > values[best] {
                best = i;
            }
        }
        best
    }

    #[test]
    fn first_max_index_chooses_as_llama_cpps_greedy_sampler() {
        let inf = f32::INFINITY;
        let cases: Vec<Vec<f32>> = vec![
            vec![1.0],
            vec![3.0, 1.0, 3.0],
            vec![-inf, -inf, -inf],
            vec![f32::NAN, 5.0, 7.0],
            vec![1.0, f32::NAN, 7.0, 7.0],
            vec![0.5; 21],
            (0..37).map(|i| ((i * 7919) % 13) as f32).collect(),
            (0..49152).map(|i| ((i as u64 * 2654435761) % 100_003) as f32 * if i % 3 == 0 { -1.0 } else { 1.0 }).collect(),
        ];
        for values in &cases {
            assert_eq!(first_max_index(values), sequential(values), "{:?}", &values[..values.len().min(8)]);
        }
        // The largest value in the tail, and ties across lanes resolved to the first.
        let mut values = vec![0.0f32; 19];
        values[18] = 1.0;
        assert_eq!(first_max_index(&values), 18);
        values[18] = 0.0;
        values[9] = 2.0;
        values[3] = 2.0;
        assert_eq!(first_max_index(&values), 3);
        assert_eq!(first_max_index(&[]), 0);
    }
}
