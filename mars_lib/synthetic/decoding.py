"""The decoding loop behind `generation.Generator`: batched sampling from a causal LM with a KV cache.

Why not `model.generate`? On a 2-core CPU, measured with SmolLM2-135M (`bench/generation_speed.py`,
profiled with torch.profiler):
- one sequence at a time, a decoding step is ~55 ms of *forward pass* (the fp32 weights are read
  once per step: the step is memory-bound), so batching is the lever;
- in a batch, transformers' sampling spends much of each step outside the model: its nucleus
  (top-p) warper sorts the whole 49,152-token vocabulary for every row (~150 ms per step at batch
  64) and `torch.multinomial` draws from all 49,152 probabilities (~65 ms);
- a padded prefill computes every prompt at the longest prompt's length (a length-sorted batch of
  64 task prompts: ~3× the real tokens); the KV cache grows by concatenation (a full copy of every
  layer's cache per step: 12 % of a batch-32 decode); finished rows are computed to the end.

This loop does transformers' arithmetic in the same order (repetition penalty → temperature →
top-p → draw; greedy = argmax after the penalty), and changes where the time goes:
- the top-p set is found with `topk` (k = 256, then 4,096 for rows with a larger nucleus) and a full
  sort only for rows larger still — exact, not a top-k approximation — and the draw is made among
  the kept tokens only;
- prompts are prefilled in chunks of similar length, their K/V written right-aligned into a
  preallocated cache (no per-step concatenation);
- rows that emit EOS leave the batch, and leading slots that are padding in every remaining row
  are dropped from the cache;
- the repetition penalty counts prompt tokens and generated tokens, not padding (transformers also
  penalises the pad token — EOS here — in padded rows, so a row's text would depend on its
  batchmates; here it does not, `tests/test_decoding.py`).
Greedy output equals `model.generate`'s token for token (tested); the sampler draws from the same
distribution (tested) with its own seeded torch.Generator, so texts differ from `model.generate`'s
for the same seed. Left padding, position ids from the attention mask.
"""
from __future__ import annotations

import torch


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty as transformers applies it: a token already in the row's ids (prompt and
    generated so far; `seen` [B, V] bool) has its logit divided by `penalty` when positive and
    multiplied by it when negative. logits: [B, V] -> [B, V]."""
    if penalty == 1.0:
        return logits
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def top_p_candidates(logits: torch.Tensor, top_p: float, ks: tuple[int, ...] = (256, 4096)) -> tuple[torch.Tensor, torch.Tensor]:
    """The nucleus of each row: (probabilities [B, K], token ids [B, K]) of the smallest set of most
    probable tokens whose mass reaches `top_p`, other entries zero — the set transformers'
    TopPLogitsWarper keeps (a token is kept when the mass of the tokens strictly more probable than
    it is below top_p; the most probable token always). Probabilities are not renormalised.
    Exact, found cheaply: the top k = 256 of every row (`topk`), then k = 4096 for the rows whose
    nucleus is larger, then a full sort only for the rows whose nucleus is larger still (a sort of
    the 49k-token vocabulary costs ~6× a top-4096)."""
    probs = torch.softmax(logits.float(), dim=-1)
    B, V = probs.shape
    rows = torch.arange(B, device=probs.device)
    parts = []                                                   # (rows, kept probs, ids) per stage
    for k in (*[k for k in ks if k < V], V):
        p = probs[rows] if len(rows) < B else probs
        vals, ids = (torch.sort(p, dim=-1, descending=True, stable=True) if k == V
                     else torch.topk(p, k, dim=-1))
        keep = (torch.cumsum(vals, dim=-1) - vals) < top_p       # mass strictly above each candidate
        keep[:, 0] = True
        more = keep[:, -1] if k < V else torch.zeros_like(keep[:, -1])
        done = (~more).nonzero().squeeze(1)
        if done.numel():
            K = int(keep[done].sum(dim=1).max())
            parts.append((rows[done], (vals[done] * keep[done])[:, :K], ids[done, :K]))
        rows = rows[more]
        if rows.numel() == 0:
            break
    K = max(v.shape[1] for _, v, _ in parts)
    out_v = probs.new_zeros(B, K)
    out_i = torch.zeros(B, K, dtype=torch.long, device=probs.device)
    for r, v, i in parts:
        out_v[r, :v.shape[1]], out_i[r, :i.shape[1]] = v, i
    return out_v, out_i


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from already-penalised logits [B, V]: argmax when temperature is 0, else a
    draw from the temperature-scaled nucleus. -> [B] token ids."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature if temperature != 1.0 else logits
    if top_p < 1.0:
        p, ids = top_p_candidates(logits, top_p)
        pick = torch.multinomial(p, 1, generator=generator)
        return ids.gather(1, pick).squeeze(1)
    return torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=generator).squeeze(1)


def _buffered_cache(model, reserve: int):
    """A DynamicCache whose layers write into preallocated buffers (room for `reserve` more tokens)
    instead of concatenating a new tensor every step (measured: 12 % of a batch-32 decode)."""
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, DynamicLayer

    class BufferedLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                B, H, t, D = key_states.shape
                self._k = key_states.new_empty(B, H, t + reserve, D)
                self._v = value_states.new_empty(B, H, t + reserve, D)
                self._n = 0
            t = key_states.shape[-2]
            self._k[:, :, self._n:self._n + t] = key_states
            self._v[:, :, self._n:self._n + t] = value_states
            self._n += t
            self.keys, self.values = self._k[:, :, :self._n], self._v[:, :, :self._n]
            return self.keys, self.values

        def place(self, rows, keys, values, length: int, batch: int):
            """Write a prefill chunk's K/V [b, H, m, D] right-aligned at `length` into rows `rows`."""
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
                _, H, _, D = keys.shape
                self._k = keys.new_zeros(batch, H, length + reserve, D)
                self._v = values.new_zeros(batch, H, length + reserve, D)
            m = keys.shape[-2]
            self._k[rows, :, length - m:length] = keys
            self._v[rows, :, length - m:length] = values
            self._n = length
            self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

        def batch_select_indices(self, indices, start: int = 0):
            """Keep rows `indices`; drop the first `start` slots (padding no kept row attends to)."""
            if self.is_initialized:
                self._k, self._v = self._k[indices, :, start:], self._v[indices, :, start:]
                self._n -= start
                self.keys, self.values = self._k[:, :, :self._n], self._v[:, :, :self._n]

    cache = DynamicCache.__new__(DynamicCache)
    Cache.__init__(cache, layers=[BufferedLayer() for _ in range(model.config.get_text_config().num_hidden_layers)])
    return cache


def _prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache, waste: float = 1.25) -> torch.Tensor:
    """Run the prompts [B, L] (left-padded) into `cache`; returns the next-token logits [B, V].

    One padded forward over the whole batch would compute every row at the longest prompt's length
    (in a length-sorted batch of 64 task prompts, ~3× the real tokens). Rows are instead prefilled
    in chunks of similar length (padding at most `waste` × the chunk's real tokens) and their K/V
    written right-aligned into the batch cache; pad slots stay masked, as in a padded forward."""
    B, L = input_ids.shape
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("decode needs left-padded prompts (tokenizer.padding_side = 'left')")
    lens = attention_mask.sum(1).tolist()
    chunks, cur = [], []
    for i in sorted(range(B), key=lambda j: lens[j]):
        trial = cur + [i]
        if cur and max(lens[j] for j in trial) * len(trial) > waste * sum(lens[j] for j in trial):
            chunks.append(cur)
            trial = [i]
        cur = trial
    chunks.append(cur)
    logits = None
    from transformers import DynamicCache
    for rows in chunks:
        m = max(lens[j] for j in rows)
        ids, am = input_ids[rows, L - m:], attention_mask[rows, L - m:]
        pos = (am.long().cumsum(-1) - 1).masked_fill(am == 0, 0)
        part = DynamicCache()
        out = model(input_ids=ids, attention_mask=am, position_ids=pos, cache=part, use_cache=True, logits_to_keep=1)
        if logits is None:
            logits = out.logits.new_empty(B, out.logits.shape[-1])
        logits[rows] = out.logits[:, -1]
        idx = torch.tensor(rows, device=input_ids.device)
        for mine, theirs in zip(cache.layers, part.layers):
            mine.place(idx, theirs.keys, theirs.values, L, B)
    return logits


@torch.inference_mode()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int, temperature: float,
           top_p: float, repetition_penalty_: float, eos_token_id: int, seed: int) -> list[tuple[list[int], bool]]:
    """Generate up to `max_new_tokens` for each left-padded row of `input_ids` [B, L].

    Returns, per row, (new token ids without the EOS, finished: whether EOS was emitted). The draws
    use one torch.Generator seeded with `seed`, so the same batch gives the same texts."""
    device = input_ids.device
    B = input_ids.shape[0]
    gen = torch.Generator(device=device).manual_seed(seed)
    vocab = model.get_output_embeddings().weight.shape[0]
    if repetition_penalty_ != 1.0:
        # prompt tokens count, padding does not (transformers also counts the pad token — EOS for these
        # models — in padded rows, which makes a row's text depend on its batchmates)
        seen = torch.zeros(B, vocab, device=device).scatter_add_(1, input_ids.clamp(max=vocab - 1),
                                                               attention_mask.float()) > 0
    else:
        seen = torch.zeros(B, vocab, dtype=torch.bool, device=device)   # unused by the penalty; kept for one code path
    cache = _buffered_cache(model, max_new_tokens)
    next_logits = _prefill(model, input_ids, attention_mask, cache)     # [live rows, V]
    live = torch.arange(B, device=device)                    # original row of each live row
    last_pos = attention_mask.long().sum(-1) - 1             # position of each row's last prompt token
    tokens: list[list[int]] = [[] for _ in range(B)]
    finished = [False] * B
    for step in range(max_new_tokens):
        logits = repetition_penalty(next_logits.float(), seen, repetition_penalty_)
        nxt = sample_tokens(logits, temperature, top_p, gen)
        is_eos = nxt == eos_token_id
        for row, tok, e in zip(live.tolist(), nxt.tolist(), is_eos.tolist()):
            if e:
                finished[row] = True
            else:
                tokens[row].append(tok)
        if step == max_new_tokens - 1:
            break
        if repetition_penalty_ != 1.0:
            seen[torch.arange(len(nxt), device=device), nxt] = True
        if bool(is_eos.any()):
            stay = (~is_eos).nonzero().squeeze(1)
            if stay.numel() == 0:
                break
            live, nxt, last_pos, attention_mask = live[stay], nxt[stay], last_pos[stay], attention_mask[stay]
            start = int(attention_mask.any(0).long().argmax())          # leading slots that are padding in every kept row
            attention_mask = attention_mask[:, start:]
            if repetition_penalty_ != 1.0:
                seen = seen[stay]
            for layer in cache.layers:
                layer.batch_select_indices(stay, start)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], dim=1)
        last_pos = last_pos + 1
        next_logits = model(input_ids=nxt[:, None], attention_mask=attention_mask, position_ids=last_pos[:, None],
                            cache=cache, use_cache=True).logits[:, -1, :]
    return [(t, f) for t, f in zip(tokens, finished)]
