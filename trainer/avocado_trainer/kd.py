"""Knowledge-distillation losses on stored teacher top-k log-probs.

Every function takes the student's logits at the KD positions ([N, V]), the
teacher's top-k (ids in the student's vocabulary, -1 where a teacher token has no
student token; log-probs, most likely first) and returns one loss per position
([N]); the caller weights and averages them.

Mass outside the stored top-k: `renormalize` keeps only the (mappable) top-k on
both sides and renormalises each; `bucket` keeps the rest as one extra outcome
(the teacher's 1 - Σp, the student's own remaining mass).
"""
import math

import torch
import torch.nn.functional as F

NEG = -1e4


def _log1mexp(log_sum):
    """log(1 - exp(x)) for x <= 0, stable near both ends."""
    x = log_sum.clamp(max=-1e-6)
    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _outcome_logs(student_logits, ids, teacher_logp, temperature, tail):
    """Teacher and student log-probabilities over the same outcomes: the valid top-k (+ the tail bucket)."""
    valid = ids >= 0
    safe = ids.clamp(min=0)
    teacher = torch.where(valid, teacher_logp, torch.full_like(teacher_logp, NEG))
    if tail == "renormalize":
        student = torch.where(valid, student_logits.gather(1, safe) / temperature, torch.full_like(teacher, NEG))
        return F.log_softmax(teacher / temperature, dim=1), F.log_softmax(student, dim=1), valid
    # At T = 1 no tempered copy of the [N, vocabulary] logits (forward and backward).
    student_full = F.log_softmax(student_logits if temperature == 1 else student_logits / temperature, dim=1)
    student = torch.where(valid, student_full.gather(1, safe), torch.full_like(teacher, NEG))
    student_tail = _log1mexp(torch.logsumexp(student, dim=1, keepdim=True))
    # The teacher's tail is known only untempered: temper it as one outcome, then renormalise.
    teacher_tail = _log1mexp(torch.logsumexp(teacher, dim=1, keepdim=True))
    teacher = F.log_softmax(torch.cat([teacher, teacher_tail], dim=1) / temperature, dim=1)
    student = torch.cat([student, student_tail], dim=1)
    return teacher, student, torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)


def _kl(p_log, q_log, mask):
    """KL(p || q) per row over the masked outcomes."""
    terms = torch.exp(p_log) * (p_log - q_log)
    return torch.where(mask, terms, torch.zeros_like(terms)).sum(dim=1)


def topk_divergence(student_logits, ids, teacher_logp, divergence="forward-kl", beta=0.5, temperature=1.0,
                    tail="bucket"):
    """Forward KL, reverse KL or generalised JSD(β) between teacher and student on the top-k outcomes, times T²."""
    teacher, student, mask = _outcome_logs(student_logits.float(), ids, teacher_logp.float(), temperature, tail)
    if divergence == "forward-kl" or (divergence == "jsd" and beta == 0):
        loss = _kl(teacher, student, mask)
    elif divergence == "reverse-kl" or (divergence == "jsd" and beta == 1):
        loss = _kl(student, teacher, mask)
    else:
        # TRL's generalised JSD: M = β·teacher + (1-β)·student; β·KL(teacher‖M) + (1-β)·KL(student‖M).
        mixture = torch.logsumexp(torch.stack([teacher + math.log(beta), student + math.log(1 - beta)]), dim=0)
        loss = beta * _kl(teacher, mixture, mask) + (1 - beta) * _kl(student, mixture, mask)
    return loss * temperature**2


def uld(student_logits, teacher_logp, temperature=1.0):
    """Universal Logit Distillation (Boizard et al. 2024): the L1 (Wasserstein-1) distance between the sorted
    probability vectors, which needs no shared vocabulary. The teacher's stored top-k is compared with the student's
    top-k; with T != 1 the teacher's top-k is tempered keeping its total mass."""
    k = teacher_logp.shape[1]
    logits = student_logits.float()
    student = torch.softmax(logits if temperature == 1 else logits / temperature, dim=1)
    student_top = student.topk(min(k, student.shape[1]), dim=1).values
    teacher = torch.exp(teacher_logp.float())
    if temperature != 1.0:
        tempered = torch.softmax(teacher_logp.float() / temperature, dim=1)
        teacher = tempered * teacher.sum(dim=1, keepdim=True)
    teacher = teacher.sort(dim=1, descending=True).values
    if student_top.shape[1] < k:
        student_top = F.pad(student_top, (0, k - student_top.shape[1]))
    return (student_top - teacher).abs().sum(dim=1)


MODE_SAME = 1
MODE_CROSS_EXACT = 2
MODE_CROSS_ULD = 3


def kd_losses(student_logits, ids, teacher_logp, modes, loss_config):
    """Per-position KD losses for the same-tokenizer rows and the cross-tokenizer rows (exact-mapped or ULD)."""
    options = dict(divergence=loss_config.get("divergence", "forward-kl"), beta=loss_config.get("beta", 0.5),
                   temperature=loss_config.get("temperature", 1.0), tail=loss_config.get("tail", "bucket"))
    exact = (modes == MODE_SAME) | (modes == MODE_CROSS_EXACT)
    sorted_rows = modes == MODE_CROSS_ULD
    # The exact divergence runs on every row, the others' ids masked (no outcome of theirs counts, so their value is
    # finite and unused): a selected copy of the [N, vocabulary] logits would cost a full-size scatter in backward.
    # ULD rows are few; they are selected.
    out = torch.zeros(modes.shape[0], device=student_logits.device)
    if exact.any():
        masked = torch.where(exact.unsqueeze(1), ids, torch.full_like(ids, -1))
        out = torch.where(exact, topk_divergence(student_logits, masked, teacher_logp, **options), out)
    if sorted_rows.any():
        out = out.index_put((sorted_rows,), uld(student_logits[sorted_rows], teacher_logp[sorted_rows],
                                                options["temperature"]))
    return out
