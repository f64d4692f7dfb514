"""Properties of the KD losses (run by src/student/kd-losses.test.ts through python3 -m unittest)."""
import unittest

import torch
import torch.nn.functional as F

from avocado_trainer.kd import MODE_CROSS_ULD, MODE_SAME, kd_losses, topk_divergence, uld


def teacher_topk(logits, k):
    logp = F.log_softmax(logits, dim=1)
    values, ids = logp.topk(k, dim=1)
    return ids, values


class TopK(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.logits = torch.randn(6, 50) * 3

    def test_zero_when_the_student_is_the_teacher(self):
        ids, logp = teacher_topk(self.logits, 50)
        for divergence in ("forward-kl", "reverse-kl", "jsd"):
            for tail in ("renormalize", "bucket"):
                loss = topk_divergence(self.logits, ids, logp, divergence=divergence, tail=tail)
                self.assertLess(float(loss.abs().max()), 1e-4, (divergence, tail))

    def test_full_vocabulary_forward_kl_is_exact(self):
        student = torch.randn(6, 50)
        ids, logp = teacher_topk(self.logits, 50)
        exact = F.kl_div(F.log_softmax(student, 1), F.log_softmax(self.logits, 1), log_target=True,
                         reduction="none").sum(1)
        loss = topk_divergence(student, ids, logp, divergence="forward-kl", tail="bucket")
        self.assertTrue(torch.allclose(loss, exact, atol=1e-4))

    def test_the_tail_bucket_sees_mass_outside_the_top_k(self):
        ids, logp = teacher_topk(self.logits, 5)
        # A student with the teacher's top-5 proportions but most mass elsewhere: renormalising cannot tell.
        student = torch.full_like(self.logits, 10.0)
        student.scatter_(1, ids, logp)
        renormalized = topk_divergence(student, ids, logp, tail="renormalize")
        bucket = topk_divergence(student, ids, logp, tail="bucket")
        self.assertLess(float(renormalized.max()), 1e-4)
        self.assertGreater(float(bucket.min()), 0.1)

    def test_unmapped_entries_are_ignored_and_jsd_is_bounded(self):
        ids, logp = teacher_topk(self.logits, 8)
        ids[:, 3] = -1
        student = torch.randn(6, 50)
        jsd = topk_divergence(student, ids, logp, divergence="jsd", beta=0.5)
        self.assertTrue(torch.isfinite(jsd).all())
        self.assertLessEqual(float(jsd.max()), 0.6932)
        self.assertGreaterEqual(float(jsd.min()), 0.0)

    def test_temperature_scales_by_its_square(self):
        ids, logp = teacher_topk(self.logits, 50)
        student = torch.randn(6, 50)
        hot = topk_divergence(student, ids, logp, temperature=2.0, tail="renormalize")
        manual = F.kl_div(F.log_softmax(student / 2, 1).gather(1, ids), F.log_softmax(logp / 2, 1),
                          log_target=True, reduction="none").sum(1) * 4
        self.assertTrue(torch.allclose(hot, manual, atol=1e-4))

    def test_gradients_flow_to_the_student(self):
        ids, logp = teacher_topk(self.logits, 10)
        student = torch.randn(6, 50, requires_grad=True)
        topk_divergence(student, ids, logp, divergence="reverse-kl").sum().backward()
        self.assertTrue(torch.isfinite(student.grad).all())
        self.assertGreater(float(student.grad.abs().sum()), 0)


class Uld(unittest.TestCase):
    def test_zero_for_a_permuted_vocabulary(self):
        torch.manual_seed(1)
        logits = torch.randn(4, 30)
        permuted = logits[:, torch.randperm(30)]
        _, logp = teacher_topk(permuted, 10)
        self.assertLess(float(uld(logits, logp).max()), 1e-5)

    def test_positive_when_the_shapes_differ(self):
        sharp = torch.zeros(2, 30)
        sharp[:, 0] = 10
        _, logp = teacher_topk(torch.zeros(2, 30), 10)
        self.assertGreater(float(uld(sharp, logp).min()), 0.5)


class Modes(unittest.TestCase):
    def test_rows_go_to_their_loss(self):
        torch.manual_seed(2)
        logits = torch.randn(4, 20)
        ids, logp = teacher_topk(torch.randn(4, 20), 5)
        modes = torch.tensor([MODE_SAME, MODE_CROSS_ULD, MODE_SAME, MODE_CROSS_ULD])
        out = kd_losses(logits, ids, logp, modes, {"divergence": "forward-kl"})
        self.assertTrue(torch.allclose(out[0::2], topk_divergence(logits[0::2], ids[0::2], logp[0::2])))
        self.assertTrue(torch.allclose(out[1::2], uld(logits[1::2], logp[1::2])))


if __name__ == "__main__":
    unittest.main()
