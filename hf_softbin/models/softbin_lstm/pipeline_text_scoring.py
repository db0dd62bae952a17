"""The text-scoring pipeline: log-probability, token count and perplexity of sentences under a causal LM.

    >>> import hf_softbin  # registers the task
    >>> from transformers import pipeline
    >>> scorer = pipeline("text-scoring", model="runs/softbin")
    >>> scorer("the cat sat on the mat")
    {'logprob': -23.1, 'num_tokens': 7, 'perplexity': 27.1}

Sentence convention (the one the models were trained on: a stream of lines, each ended by `<eos>`): a sentence is
scored on its own, from a fresh (zero) state, as `w1 ... wn <eos>`. The model is first fed the start token
(`config.bos_token_id`, which is `<eos>` for the word-level models of hf-softbin: a sentence starts where the previous
one ended), so `w1` is predicted from that context, and the `n + 1` tokens `w1 ... wn <eos>` are scored.
`score_eos=False` leaves the final `<eos>` out (then `n` tokens). All log-probabilities are natural logs;
`perplexity = exp(-logprob / num_tokens)`. An empty string scores `<eos>` alone; with `score_eos=False` it scores
nothing (`num_tokens` 0, `perplexity` None).

Batching (`batch_size=`) pads (on the tokenizer's padding side) with an attention mask; padded positions leave the
LSTM state untouched, so a sentence scores the same alone or in a padded batch. A sentence longer than
`max_segment_length` tokens is fed in segments with the LSTM state carried from one to the next, which gives the
same scores as one pass and bounds the memory of the logits.

`progress=True` shows a progress bar over the tokens of long inputs. An empty list of inputs gives an empty list.

This file imports only its siblings (relatively), torch, tqdm and transformers, so a saved checkpoint carries it as
remote code:
`save_pretrained` copies it beside the model and declares it in config.json (`custom_pipelines`), and
`pipeline("text-scoring", model=DIR, trust_remote_code=True)` then works without hf_softbin installed.
"""

import math

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, Pipeline

from .modeling_softbin_lstm import real_tokens_first

TASK = "text-scoring"
DEFAULT_MAX_SEGMENT_LENGTH = 256
PROGRESS_MIN_TOKENS = 4 * DEFAULT_MAX_SEGMENT_LENGTH  # shorter inputs finish before a bar would be useful


def sentence_ids(tokenizer, text: str, start_id: int, eos_id: int) -> list[int]:
    """`[start, w1, ..., wn, eos]`: the ids the model reads (all but the last) and scores (all but the first)."""
    if not isinstance(text, str):
        raise TypeError(f"text-scoring takes a string or a list of strings, got {type(text).__name__}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [start_id, *ids, eos_id]


def start_and_eos_ids(model, tokenizer) -> tuple[int, int]:
    """The start token (bos, falling back to eos) and the end-of-sentence token, from the model config first."""
    config = model.config
    eos_id = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    start_id = config.bos_token_id if config.bos_token_id is not None else eos_id
    if eos_id is None:
        raise ValueError("text-scoring needs an end-of-sentence token: set config.eos_token_id or tokenizer.eos_token")
    if isinstance(eos_id, (list, tuple)):
        eos_id = eos_id[0]
    return int(start_id), int(eos_id)


@torch.no_grad()
def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   max_segment_length: int = DEFAULT_MAX_SEGMENT_LENGTH,
                   progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Natural-log probability of every token given the tokens before it in its row, each row from a fresh state.

    `input_ids` (batch, time) may be padded anywhere; `attention_mask` marks the real tokens. Returns `(ids,
    logprobs, lengths)`: each row's real tokens moved to the front (`ids`, padded with the first id of the row),
    `logprobs[b, j] = ln p(ids[b, j] | ids[b, :j])` for `1 <= j < lengths[b]` and 0 elsewhere (the first token is
    only read, never scored). The model runs over segments of at most `max_segment_length` tokens with its state
    carried (`cache=`), so memory stays bounded and the result equals one pass. `progress` shows a bar over the
    tokens when the rows are long.
    """
    if max_segment_length < 1:
        raise ValueError(f"max_segment_length must be >= 1, got {max_segment_length}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError("a row of input_ids has no real token (its attention_mask is all zeros)")
    # Real tokens first, so every row is right-padded and the prediction of token j is output j - 1.
    order = real_tokens_first(mask)
    ids = input_ids if order is None else input_ids.gather(1, order)
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    real = positions < lengths.unsqueeze(1)
    ids = torch.where(real, ids, ids[:, :1])
    attention = real.long()
    logprobs = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    cache = None
    total = ids.shape[1]
    bar = tqdm(total=total - 1, unit="tok", leave=False, desc="scoring",
               disable=not progress or total < PROGRESS_MIN_TOKENS)
    for start in range(0, total - 1, max_segment_length):
        end = min(start + max_segment_length, total - 1)
        outputs = model(input_ids=ids[:, start:end], attention_mask=attention[:, start:end], cache=cache,
                        use_cache=True, return_dict=True)
        cache = outputs.cache
        logits = outputs.logits.float()
        targets = ids[:, start + 1:end + 1]
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        logprobs[:, start + 1:end + 1] = picked
        bar.update(end - start)
    bar.close()
    logprobs = torch.where(real & (positions > 0), logprobs, torch.zeros_like(logprobs))
    return ids, logprobs, lengths


class TextScoringPipeline(Pipeline):
    """Scores sentences with a causal LM: `{"logprob", "num_tokens", "perplexity"}` for each input.

    Call options:
        return_token_scores (`bool`, default False): add `"token_scores"`, a list of `(token, logprob)` for every
            scored token, tokens as the vocabulary spells them (an out-of-vocabulary word shows as `<unk>`).
        score_eos (`bool`, default True): score the final `<eos>`.
        max_segment_length (`int`, default 256): longest stretch fed to the model at once; longer sentences run in
            segments with the state carried over.
        batch_size (`int`): score this many sentences at a time, padded.
        progress (`bool`, default False): show a progress bar over the tokens of long inputs.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, return_token_scores=None, score_eos=None, max_segment_length=None, progress=None,
                             **kwargs):
        if kwargs:
            raise TypeError(f"text-scoring got unexpected option(s): {sorted(kwargs)}")
        forward, postprocess = {}, {}
        if progress is not None:
            forward["progress"] = bool(progress)
        if max_segment_length is not None:
            if isinstance(max_segment_length, bool) or not isinstance(max_segment_length, int) or max_segment_length < 1:
                raise ValueError(f"max_segment_length must be a positive integer, got {max_segment_length!r}")
            forward["max_segment_length"] = max_segment_length
        if return_token_scores is not None:
            postprocess["return_token_scores"] = bool(return_token_scores)
        if score_eos is not None:
            postprocess["score_eos"] = bool(score_eos)
        return {}, forward, postprocess

    def preprocess(self, text):
        start_id, eos_id = start_and_eos_ids(self.model, self.tokenizer)
        ids = sentence_ids(self.tokenizer, text, start_id, eos_id)
        input_ids = torch.tensor([ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def _forward(self, model_inputs, max_segment_length=DEFAULT_MAX_SEGMENT_LENGTH, progress=False):
        ids, logprobs, lengths = token_logprobs(self.model, model_inputs["input_ids"], model_inputs["attention_mask"],
                                                max_segment_length, progress)
        return {"token_ids": ids, "token_logprobs": logprobs, "lengths": lengths}

    def postprocess(self, model_outputs, return_token_scores=False, score_eos=True):
        length = int(model_outputs["lengths"].reshape(-1)[0])
        last = length if score_eos else length - 1
        ids = model_outputs["token_ids"][0, 1:last].tolist()
        values = model_outputs["token_logprobs"][0, 1:last].double()
        logprob = float(values.sum())
        num_tokens = len(ids)
        result = {
            "logprob": logprob,
            "num_tokens": num_tokens,
            "perplexity": math.exp(-logprob / num_tokens) if num_tokens else None,
        }
        if return_token_scores:
            tokens = self.tokenizer.convert_ids_to_tokens(ids)
            result["token_scores"] = list(zip(tokens, values.tolist()))
        return result


def register_pipeline():
    """Register the task "text-scoring" in Transformers' pipeline registry (`import hf_softbin` does it)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=TextScoringPipeline, pt_model=AutoModelForCausalLM,
                                        type="text")


def declare_pipeline(config) -> None:
    """Declare the pipeline in `config.custom_pipelines`, so a saved checkpoint finds it as remote code.

    `save_pretrained` copies this file beside the model (it is a relative import of modeling_softbin_lstm.py).
    """
    declared = dict(getattr(config, "custom_pipelines", None) or {})
    module = TextScoringPipeline.__module__.rsplit(".", 1)[-1]
    declared[TASK] = {"impl": f"{module}.{TextScoringPipeline.__name__}", "pt": ["AutoModelForCausalLM"], "type": "text"}
    config.custom_pipelines = declared
