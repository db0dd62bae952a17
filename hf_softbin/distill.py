"""Knowledge distillation from a full-precision teacher (DESIGN 2.3)."""

import torch
import torch.nn.functional as F


class DistillationLoss(torch.autograd.Function):
    """Loss and its gradient with respect to the student's logits in one pass over the vocabulary.

    With p = softmax(s), p_T = softmax(s / T), q_T = softmax(t / T) and one-hot y, the gradient per token is
    `(1 - lambda) * (p - y) + lambda * T * (p_T - q_T)`. Computing it directly needs one softmax of the student (two
    when T != 1) and one of the teacher, instead of autograd's chain of log-softmaxes, copies and KL terms.
    """

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, targets, kd_lambda, temperature, ignore_index):
        keep = (targets != ignore_index).to(student_logits.dtype).unsqueeze(1)
        count = keep.sum().clamp(min=1.0)
        index = targets.clamp(min=0).unsqueeze(1)
        log_p = F.log_softmax(student_logits, dim=-1)
        ce = -(log_p.gather(1, index) * keep).sum() / count
        if temperature == 1.0:
            log_p_t, log_q_t = log_p, F.log_softmax(teacher_logits, dim=-1)
        else:
            log_p_t = F.log_softmax(student_logits / temperature, dim=-1)
            log_q_t = F.log_softmax(teacher_logits / temperature, dim=-1)
        q_t = log_q_t.exp()
        kl = ((q_t * (log_q_t - log_p_t)).sum(dim=1, keepdim=True) * keep).sum() / count
        p_t = log_p_t.exp()
        grad = (p_t - q_t).mul_(kd_lambda * temperature)
        grad.add_(p_t if temperature == 1.0 else log_p.exp(), alpha=1.0 - kd_lambda)
        grad.scatter_add_(1, index, keep * -(1.0 - kd_lambda))
        grad.mul_(keep / count)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(ce)
        return (1.0 - kd_lambda) * ce + kd_lambda * temperature**2 * kl, ce

    @staticmethod
    def backward(ctx, grad_loss, grad_ce):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None, None, None, None


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      kd_lambda: float, temperature: float, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """`(1 - lambda) * CE(y, p_student) + lambda * T^2 * KL(p_teacher^T || p_student^T)`, averaged over tokens.

    Returns the total loss and the cross-entropy alone (for reporting perplexity).
    """
    vocab = student_logits.shape[-1]
    return DistillationLoss.apply(student_logits.reshape(-1, vocab).float(), teacher_logits.reshape(-1, vocab).float(),
                                  targets.reshape(-1), float(kd_lambda), float(temperature), ignore_index)


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
    """Copy the teacher's weights into the student's latent weights, clipped to [-1, 1]; re-derive learned scalars."""
    from .modeling_softbin import QuantizedMatrix

    teacher_state = teacher.state_dict()
    for name, parameter in student.named_parameters():
        if name not in teacher_state:
            continue  # learned scalars, BLLM gamma/beta: not in a float model
        source = teacher_state[name]
        if source.shape != parameter.shape:
            raise ValueError(f"cannot initialize the student from the teacher: {name} has shape {tuple(source.shape)} "
                             f"in the teacher and {tuple(parameter.shape)} in the student")
        parameter.copy_(source)
    for module in student.modules():
        if isinstance(module, QuantizedMatrix) and module.binarized:
            module.weight.clamp_(-1.0, 1.0)
            module.reset_scale()
