import pytest
import torch
import torch.nn.functional as F

from hf_softbin.training.distill import distillation_loss


def reference_loss(student, teacher, targets, kd_lambda, temperature):
    """The definition, term by term, with autograd."""
    keep = targets != -100
    ce = F.cross_entropy(student, targets, ignore_index=-100)
    kl = F.kl_div(F.log_softmax(student[keep] / temperature, -1), F.log_softmax(teacher[keep] / temperature, -1),
                  log_target=True, reduction="batchmean")
    return (1 - kd_lambda) * ce + kd_lambda * temperature**2 * kl, ce


@pytest.mark.parametrize("kd_lambda, temperature", [(0.5, 1.0), (0.0, 1.0), (1.0, 1.0), (0.3, 2.0), (0.7, 0.5)])
def test_fused_loss_and_gradient_match_the_definition(kd_lambda, temperature):
    torch.manual_seed(0)
    student = torch.randn(12, 7, requires_grad=True)
    teacher = torch.randn(12, 7)
    targets = torch.randint(0, 7, (12,))
    targets[3] = -100
    loss, ce = distillation_loss(student, teacher.clone(), targets, kd_lambda, temperature)
    (loss * 2).backward()
    fused_grad = student.grad.clone()
    student.grad = None
    expected, expected_ce = reference_loss(student, teacher, targets, kd_lambda, temperature)
    (expected * 2).backward()
    assert torch.allclose(loss, expected, atol=1e-6) and torch.allclose(ce, expected_ce, atol=1e-6)
    assert torch.allclose(fused_grad, student.grad, atol=1e-6)
    assert fused_grad[3].abs().sum() == 0  # ignored token: no gradient


def test_student_equal_to_teacher_has_no_kl_term():
    logits = torch.randn(5, 9)
    targets = torch.randint(0, 9, (5,))
    loss, ce = distillation_loss(logits, logits.clone(), targets, 0.5, 2.0)
    assert torch.allclose(loss, 0.5 * ce, atol=1e-6)
