"""Knowledge distillation from a full-precision teacher (DESIGN 2.3)."""

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      kd_lambda: float, temperature: float, ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """`(1 - lambda) * CE(y, p_student) + lambda * T^2 * KL(p_teacher^T || p_student^T)`, averaged over tokens.

    Returns the total loss and the cross-entropy alone (for reporting perplexity).
    """
    vocab = student_logits.shape[-1]
    student_logits = student_logits.reshape(-1, vocab).float()
    targets = targets.reshape(-1)
    ce = F.cross_entropy(student_logits, targets, ignore_index=ignore_index)
    if kd_lambda == 0.0:
        return ce, ce
    keep = targets != ignore_index
    student_log_probs = F.log_softmax(student_logits[keep] / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.reshape(-1, vocab)[keep].float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return (1.0 - kd_lambda) * ce + kd_lambda * temperature**2 * kl, ce


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
