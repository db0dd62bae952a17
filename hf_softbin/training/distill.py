"""Knowledge distillation from a full-precision teacher (docs/method.md, "Knowledge distillation").

The teacher is one float model or an ensemble of them; the student learns from its next-word distribution (the KL
term), optionally from its LSTM outputs (the hidden-state term), on the real text and on text sampled from it
(sampled_text.py).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class DistillationLoss(torch.autograd.Function):
    """Loss and its gradient with respect to the student's logits, in few passes over the (tokens x vocabulary)
    matrices and with one new buffer of that size: on a CPU these passes, not the arithmetic, cost the time.

    With p = softmax(s), p_T = softmax(s / T), q_T = softmax(t / T) and one-hot y, the gradient per token is
    `(1 - lambda) * (p - y) + lambda * T * (p_T - q_T)`. The teacher's logits are overwritten (they are not needed
    afterwards). The KL sum is computed as sum q_T * (log q_T - log p_T) = q_T . (t' - s') - lse(t') + lse(s'), with
    t' = t / T and s' = s / T, as whole-matrix dot products.
    """

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, targets, kd_lambda, temperature, ignore_index):
        s, t = student_logits, teacher_logits
        keep = (targets != ignore_index).to(s.dtype).unsqueeze(1)
        count = keep.sum().clamp(min=1.0)
        index = targets.clamp(min=0).unsqueeze(1)
        # The student at temperature T: p_T in a new buffer, and its log-normalizer.
        shift_s = s.amax(dim=1, keepdim=True)
        p_t = torch.sub(s, shift_s)
        if temperature != 1.0:
            p_t.div_(temperature)
        p_t.exp_()
        norm_s = p_t.sum(dim=1, keepdim=True)
        p_t.div_(norm_s)
        lse_s_t = shift_s / temperature + norm_s.log()
        # The teacher: t' - max in place, q_T (zero on ignored tokens) in a second buffer.
        if temperature != 1.0:
            t.div_(temperature)
        shift_t = t.amax(dim=1, keepdim=True)
        t.sub_(shift_t)
        q_t = torch.exp(t)
        norm_t = q_t.sum(dim=1, keepdim=True)
        q_t.mul_(keep / norm_t)
        # sum over kept tokens of KL(q_T || p_T)
        q_dot_t = torch.dot(q_t.view(-1), t.view(-1)) + (keep * shift_t).sum()  # q . t'
        q_dot_s = torch.dot(q_t.view(-1), s.view(-1)) / temperature  # q . s'
        kl = (q_dot_t - q_dot_s - (keep * (shift_t + norm_t.log())).sum() + (keep * lse_s_t).sum()) / count
        # Cross-entropy at temperature 1.
        if temperature == 1.0:
            p, lse_s = p_t, lse_s_t
        else:
            lse_s = torch.logsumexp(s, dim=1, keepdim=True)
            p = torch.exp(s - lse_s)
        ce = ((lse_s - s.gather(1, index)) * keep).sum() / count
        # Gradient (before the 1/count and keep factors, applied in backward), built in p_T's buffer.
        if temperature == 1.0:
            grad = p_t.sub_(q_t, alpha=kd_lambda)
        else:
            grad = p_t.sub_(q_t).mul_(kd_lambda * temperature).add_(p, alpha=1.0 - kd_lambda)
        grad.scatter_add_(1, index, torch.full_like(keep, -(1.0 - kd_lambda)))
        ctx.save_for_backward(grad, keep / count)
        ctx.mark_non_differentiable(ce)
        return (1.0 - kd_lambda) * ce + kd_lambda * temperature**2 * kl, ce

    @staticmethod
    def backward(ctx, grad_loss, grad_ce):
        grad, scale = ctx.saved_tensors
        return grad.mul_(scale * grad_loss), None, None, None, None, None


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      kd_lambda: float, temperature: float, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """`(1 - lambda) * CE(y, p_student) + lambda * T^2 * KL(p_teacher^T || p_student^T)`, averaged over tokens.

    Returns the total loss and the cross-entropy alone (for reporting perplexity). `teacher_logits` may be
    overwritten: it is scratch space once the loss is computed.
    """
    vocab = student_logits.shape[-1]
    teacher_logits = teacher_logits.detach().reshape(-1, vocab).float()  # overwritten: pass a copy if you need them
    return DistillationLoss.apply(student_logits.reshape(-1, vocab).float(), teacher_logits, targets.reshape(-1),
                                  float(kd_lambda), float(temperature), ignore_index)


def check_same_vocabulary(teacher_tokenizer, student_tokenizer, teacher_path: str):
    """A teacher can only teach a student that numbers the words the same way."""
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()))[:5]
        raise ValueError(
            f"teacher {teacher_path} has a different vocabulary than the student ({len(teacher_vocab)} vs "
            f"{len(student_vocab)} entries; first differences: {differing}). Train the student with the teacher's "
            "tokenizer (leave data.tokenizer unset, or point it at the teacher)."
        )


@torch.no_grad()
def init_student_from_teacher(student, teacher):
    """Copy the teacher's weights into the student's latent weights, then let every matrix re-derive its quantized
    form from them (binary: clip to [-1, 1] and reset learned scalars; PQ: k-means codebooks and codes)."""
    teacher_state = teacher.state_dict()
    for name, parameter in student.named_parameters():
        if name not in teacher_state:
            continue  # learned scalars, BLLM gamma/beta, PQ codebooks: not in a float model
        source = teacher_state[name]
        if source.shape != parameter.shape:
            raise ValueError(f"cannot initialize the student from the teacher: {name} has shape {tuple(source.shape)} "
                             f"in the teacher and {tuple(parameter.shape)} in the student")
        parameter.copy_(source)
    for matrix in student.matrices().values():
        matrix.fit_to_latent_()


def hidden_state_loss(student_layers: tuple[torch.Tensor, ...], teacher_layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean over layers and tokens of ||h_s / |h_s| - h_t / |h_t|||^2: each LSTM layer's output of the student pulled
    toward the teacher's direction (as OneBit and LLM-QAT do), whatever the two models' scales."""
    if len(student_layers) != len(teacher_layers):
        raise ValueError(f"the hidden-state loss pairs layers: the student has {len(student_layers)} LSTM layers, the "
                         f"teacher {len(teacher_layers)}")
    losses = [(F.normalize(student.float(), dim=-1) - F.normalize(teacher.float(), dim=-1)).pow(2).sum(-1).mean()
              for student, teacher in zip(student_layers, teacher_layers)]
    return torch.stack(losses).mean()


@dataclass
class TeacherOutput:
    logits: torch.Tensor  # next-word logits; for an ensemble, the log of its members' mean probabilities
    states: list  # one carried LSTMState per member
    layers: tuple[torch.Tensor, ...] | None  # the first member's LSTM layer outputs, when asked for


class Teacher:
    """The frozen full-precision model(s) a student learns from: one model, or an ensemble whose members' next-word
    probabilities are averaged. Each member carries its own LSTM state; the first one's layers serve the hidden-state
    loss and its weights initialize the student."""

    def __init__(self, models: list):
        if not models:
            raise ValueError("a teacher needs at least one model")
        vocabularies = {model.config.vocab_size for model in models}
        if len(vocabularies) > 1:
            raise ValueError(f"the ensemble's models have different vocabulary sizes {sorted(vocabularies)}")
        self.models = [model.eval().requires_grad_(False) for model in models]

    @property
    def first(self):
        return self.models[0]

    def to(self, device) -> "Teacher":
        self.models = [model.to(device) for model in self.models]
        return self

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, states: list | None = None, layers: bool = False) -> TeacherOutput:
        states = states or [None] * len(self.models)
        outputs = [model(input_ids=input_ids, cache=state, output_hidden_states=layers and index == 0)
                   for index, (model, state) in enumerate(zip(self.models, states))]
        if len(outputs) == 1:
            logits = outputs[0].logits
        else:
            log_probs = torch.stack([F.log_softmax(output.logits.float(), dim=-1) for output in outputs])
            logits = torch.logsumexp(log_probs, dim=0) - math.log(len(outputs))
        hidden = outputs[0].hidden_states[1:] if layers else None  # without the embedding output
        return TeacherOutput(logits, [output.cache for output in outputs], hidden)
