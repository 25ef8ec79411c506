"""The photo model's fusion: a zero-shot bridge through the 1,000 ImageNet concepts (no trained weights)."""
from __future__ import annotations

import torch

from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput

CLASSES = 1000


def _cam(query: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """query (B, K, 1000) class weights, logits (B, P, S, 1000) patch logits -> (B, K, P): the class
    activation map of each query at each size, min-max normalised per size (the classifier's bias, a
    constant per map, drops out), then averaged over the sizes."""
    cams = torch.einsum("bkc,bpsc->bksp", query, logits)  # (B, K, S, P)
    lo, hi = cams.amin(-1, keepdim=True), cams.amax(-1, keepdim=True)
    return ((cams - lo) / (hi - lo).clamp_min(1e-12)).mean(2)


class ConceptBridgeFusion(Fusion):
    """Zero-shot grounding through ImageNet concepts: the sentence says which of the 1,000 classes it names
    (MiniLM similarity to the class names), the photo's patches say how much each class is present there
    (the EfficientNet-Lite0 classifier applied to every patch: class activation maps, Zhou et al. 2016),
    and the map of what the sentence names is where the two agree.

    The sentence's map is the class activation map of the mixture of the classes its candidate words name
    (weighted by ``word_weights``), min-max normalised per input size and averaged over sizes
    (``extras["sentence_attention"]``, (B, P)); each candidate's own map, made a distribution over the
    patches, is its row of ``attention["layer0"]`` (B, 1, K, P), so the pages show it like any attention.
    The answer (``logits``) is the ImageNet concept the sentence names, and ``extras["named_similarity"]``
    how well its weightiest word names any concept at all. It can only find
    what ImageNet has a class for (no people, sky or flags), and ``mmlab.domain.ConceptDomain`` says so.
    Needs the ``efficientnet_lite0_patches`` and ``minilm_concepts`` encoders; nothing to train.
    """

    family = "attention"
    attends = True
    decides = True
    trainable = False

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        B, P, SC = image.tokens.shape
        logits = image.tokens.view(B, P, SC // CLASSES, CLASSES)  # (B, P, S, 1000)
        dist, weight = text.tokens[..., :CLASSES], text.tokens[..., CLASSES]  # (B, K, 1000), (B, K)
        query = text.pooled[:, :CLASSES]  # (B, 1000): the word-weighted mixture of what the candidates name
        rows = _cam(dist, logits)
        rows = rows / rows.sum(-1, keepdim=True).clamp_min(1e-12)
        rows = rows * text.mask.unsqueeze(-1).to(rows.dtype)  # padded candidates: empty rows
        sentence = _cam(query[:, None], logits)[:, 0]  # (B, P) in [0, 1]
        fused = torch.cat([query, sentence], -1)
        return FusionOutput(fused=fused, attention={"layer0": rows.unsqueeze(1)}, logits=query.clamp_min(1e-12).log(),
                            extras={"sentence_attention": sentence, "word_weights": weight,
                                    "named_similarity": text.pooled[:, CLASSES]})
