"""The photo model's encoders: both modalities turned into ImageNet concepts, so a sentence and a photo meet
in a space two offline pretrained models already share (no image-text pair was ever needed).

- ``EfficientNetPatches``: the frozen ImageNet EfficientNet-Lite0 run fully convolutionally on the
  letterboxed photo at several sizes; each patch of its last feature map goes through the network's own
  classifier, so every patch gets logits over the 1,000 ImageNet classes (its class activations, Zhou et
  al. 2016). Tokens: (B, P, S * 1000), the S sizes' patch logits side by side on the base size's patch grid.
- ``MiniLMConcepts``: the sentence's candidate words and two-word compounds (content words; stop words and
  attribute words such as colours left out) each embedded by the frozen MiniLM inside "a photo of a {x}"
  and compared with every ImageNet class's names (WordNet lemmas, shipped in timm) embedded the same way:
  a candidate's similarity to a class is its best cosine over the class's names. Tokens: (B, K, 1002), per
  candidate its class distribution (softmax of the similarities / ``label_temp``), its weight in the
  sentence (softmax over candidates of how concrete it is, plus a bonus for the head noun of the first
  noun phrase, / ``word_temp``) and how concrete it is (its best similarity to any class); pooled
  (B, 1001): the weighted mixture of the candidates' distributions (what the sentence names) and the
  weightiest candidate's similarity (whether any ImageNet concept matches it at all).

The recipe's constants were chosen on photos and composites kept apart from the ones its figures are
measured on (docs/RESULTS.md, "The photo model").
"""
from __future__ import annotations

import functools
import re

import torch
import torch.nn.functional as F

from mmlab.encoders.base import ImageEncoder, TextEncoder
from mmlab.encoders.pretrained import (FEATURE_DTYPE, IMAGENET_MEAN, IMAGENET_STD, MINILM_MAX_LENGTH,
                                       _load_efficientnet_lite0, _load_minilm, minilm_tokenizer, on_device,
                                       prepare_images)
from mmlab.errors import InputError
from mmlab.threads import side_by_side
from mmlab.types import EncoderOutput

PROMPT = "a photo of a {}"
CLASSES = 1000
MAX_CANDIDATES = 16
STOPWORDS = frozenset("""a an the of on in at to with and or by from into onto near next behind under over above below
this that these those its it is are was his her their my your our some one two three which who what where there
here left right top bottom middle center centre front back side edge corner upper lower""".split())
# attribute words (colour, material, size, age) never name a concept of their own: MiniLM maps them to
# unrelated classes ("red" -> hotdog through "red hot", "orange" -> the fruit, "black" -> black stork)
ATTRIBUTES = frozenset("""red orange yellow green blue purple violet pink brown black white grey gray silver golden gold
dark light bright pale colourful colorful striped spotted wooden wood metal metallic steel iron plastic glass
paper big small large little tall short long round square tiny huge giant old new young shiny blurry blurred""".split())


def imagenet_lemmas() -> list[list[str]]:
    """Per ImageNet-1k class index: its WordNet names, from the synset metadata timm ships (no download).

    Read straight from timm's package data (``timm.data.ImageNetInfo``'s files): importing timm would pull in
    torchvision and torch._dynamo, over a second of the photo model's first load."""
    import csv
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("timm")  # locates the package without running it
    info = Path(next(iter(spec.submodule_search_locations or ()), "")) / "data" / "_info" if spec else None
    if info is None or not (info / "imagenet_synsets.txt").is_file():
        import timm.data

        meta = timm.data.ImageNetInfo()
        return [[n.strip() for n in meta.index_to_description(i).split(":", 1)[0].split(", ") if n.strip()]
                for i in range(meta.num_classes())]
    synsets = (info / "imagenet_synsets.txt").read_text(encoding="utf-8").splitlines()
    lemmas = dict(csv.reader((info / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines(),
                             delimiter="\t"))
    return [[n.strip() for n in lemmas[s].split(", ") if n.strip()] for s in synsets]


def class_names() -> list[str]:
    """The first WordNet name of each ImageNet class ("tabby", "Egyptian cat", ...)."""
    return [names[0] for names in imagenet_lemmas()]


def candidates(sentence: str) -> list[tuple[str, bool]]:
    """(text, is_head) of the content words and adjacent two-word compounds of a sentence, the head noun of its
    first noun phrase marked: "the model of the space shuttle" -> model (head), space, space shuttle, shuttle;
    "the cat's pink nose" -> cat, nose (head). Stop words and attribute words are left out."""
    tokens = re.findall(r"[A-Za-z][A-Za-z\-]*(?:'s)?", sentence.lower())
    chunks, cur = [], []
    for tok in tokens:
        w = tok[:-2] if tok.endswith("'s") else tok
        if w in STOPWORDS:
            if cur:
                chunks.append(cur)
            cur = []
            continue
        if w not in ATTRIBUTES:
            cur.append(w)
        if tok.endswith("'s") and cur:  # a possessor is a chunk of its own ("cat's nose" -> cat | nose)
            chunks.append(cur)
            cur = []
    if cur:
        chunks.append(cur)
    first = 0
    possessors = [t for t in tokens if t.endswith("'s")]
    if possessors and len(chunks) > 1 and chunks[0][-1] == possessors[0][:-2]:
        first = 1
    out: list[tuple[str, bool]] = []
    for k, chunk in enumerate(chunks):
        for i, w in enumerate(chunk):
            if i > 0:
                out.append((f"{chunk[i - 1]} {w}", k == first and i == len(chunk) - 1))
            out.append((w, k == first and i == len(chunk) - 1))
    seen, unique = set(), []
    for text, head in out:
        if text not in seen:
            seen.add(text)
            unique.append((text, head))
    return unique[:MAX_CANDIDATES] or [(sentence.strip().lower() or "thing", True)]


class EfficientNetPatches(ImageEncoder):
    """ImageNet EfficientNet-Lite0, frozen, every patch classified on its own, at ``sizes`` (the first is the
    base: its patch grid is the tokens' grid; the others' maps are resized to it)."""

    frozen = True

    def __init__(self, *, sizes: tuple[int, ...] = (704, 800, 896), pretrained: bool = True):
        super().__init__()
        if not sizes or min(sizes) < 32:
            raise InputError(f"the photo encoder needs input sizes of at least 32 px, got {sizes}")
        self.sizes, self.pretrained = tuple(int(s) for s in sizes), pretrained
        g = -(-self.sizes[0] // 32)
        self.grid = (g, g)
        self.cache_key = f"efficientnet_lite0-logits-{'-'.join(map(str, self.sizes))}"

    def backbone(self, size: int, device: torch.device):
        return on_device(("efficientnet_lite0", size, self.pretrained), device,
                         lambda: _load_efficientnet_lite0(size, self.pretrained))

    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, S, S) in [0, 1] -> {"logits": (B, sizes, 1000, h, w)} per-patch class logits."""
        def at(size: int) -> torch.Tensor:
            net = self.backbone(size, images.device)
            x = prepare_images(images, size, IMAGENET_MEAN, IMAGENET_STD)
            x = x.contiguous(memory_format=torch.channels_last)  # the backbone's layout
            feats = net.extract_features(x)  # (B, 1280, h', w')
            logits = torch.einsum("bchw,kc->bkhw", feats, net._fc.weight) + net._fc.bias[None, :, None, None]
            if logits.shape[-2:] != self.grid:  # (B, 1000, h', w') onto the base grid (linear, so a
                # class activation map of the resized logits is the resized map)
                logits = F.interpolate(logits, size=self.grid, mode="bilinear", align_corners=False)
            return logits

        with torch.no_grad():  # the sizes side by side, the largest first: a core each
            order = sorted(range(len(self.sizes)), key=lambda i: -self.sizes[i])
            out = side_by_side({i: functools.partial(at, self.sizes[i]) for i in order})
        return {"logits": torch.stack([out[i] for i in range(len(self.sizes))], 1).to(FEATURE_DTYPE)}

    def from_features(self, logits: torch.Tensor) -> EncoderOutput:
        B, S, C, h, w = logits.shape
        tokens = logits.float().permute(0, 3, 4, 1, 2).reshape(B, h * w, S * C)  # (B, P, S * 1000)
        mask = torch.ones(B, h * w, dtype=torch.bool, device=logits.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(1), grid=(h, w))

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return self.from_features(**self.extract(images))


class MiniLMConcepts(TextEncoder):
    """A sentence's candidate words as ImageNet concepts (see the module's docstring); the class names'
    embeddings are computed once, when the photo model is built, and kept in its checkpoint."""

    frozen = True

    def __init__(self, *, label_temp: float = 0.1, word_temp: float = 0.02, head_bonus: float = 0.05,
                 pretrained: bool = True):
        super().__init__()
        self.label_temp, self.word_temp, self.head_bonus = float(label_temp), float(word_temp), float(head_bonus)
        self.pretrained = pretrained
        self.max_tokens = MAX_CANDIDATES
        self.cache_key = "minilm-concepts"
        n = sum(len(names) for names in imagenet_lemmas())
        # filled by ``embed_class_names`` when the model is built, then loaded with the checkpoint
        self.register_buffer("name_embeddings", torch.zeros(n, 384))  # (L, 384) unit vectors
        self.register_buffer("name_class", torch.zeros(n, dtype=torch.long))  # (L,) the class of each name

    # -- the class names
    def _embed(self, texts: list[str]) -> torch.Tensor:
        tok = minilm_tokenizer()
        net = self._backbone()
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 256):
                batch = tok(texts[i:i + 256], MINILM_MAX_LENGTH)
                h = net(**batch).last_hidden_state  # (b, T, 384)
                m = batch["attention_mask"].unsqueeze(-1).float()
                out.append(F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1), dim=-1))
        return torch.cat(out)

    def _backbone(self):
        return on_device(("minilm", self.pretrained), torch.device("cpu"), lambda: _load_minilm(self.pretrained))

    def embed_class_names(self) -> None:
        """Embed every ImageNet class name inside the prompt (about half a minute on a CPU, once per build)."""
        names, owner = [], []
        for c, lemmas in enumerate(imagenet_lemmas()):
            for lemma in lemmas:
                names.append(PROMPT.format(lemma))
                owner.append(c)
        self.name_embeddings.copy_(self._embed(names))
        self.name_class.copy_(torch.tensor(owner))

    # -- the text interface
    def token_strings(self, text: str) -> list[str]:
        return [c for c, _ in candidates(text)]

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Every text's candidates inside the prompt: {"input_ids", "attention_mask": (B, K, T), "real", "head":
        (B, K)} (K the most candidates of a text in the batch)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("tokenize needs at least one text")
        cands = [candidates(t) for t in texts]
        K = max(len(c) for c in cands)
        flat = [PROMPT.format(c[k][0]) if k < len(c) else "" for c in cands for k in range(K)]
        batch = minilm_tokenizer()(flat, MINILM_MAX_LENGTH)
        B = len(texts)
        real = torch.tensor([[k < len(c) for k in range(K)] for c in cands])
        head = torch.tensor([[k < len(c) and c[k][1] for k in range(K)] for c in cands])
        return {"input_ids": batch["input_ids"].view(B, K, -1), "attention_mask": batch["attention_mask"].view(B, K, -1),
                "real": real, "head": head}

    def extract(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, real: torch.Tensor,
                head: torch.Tensor) -> dict[str, torch.Tensor]:
        B, K, T = input_ids.shape
        net = self._backbone()
        with torch.no_grad():
            h = net(input_ids=input_ids.view(B * K, T), attention_mask=attention_mask.view(B * K, T)).last_hidden_state
            m = attention_mask.view(B * K, T).unsqueeze(-1).float()
            emb = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1), dim=-1).view(B, K, -1)  # (B, K, 384)
        return {"embeddings": emb, "real": real, "head": head}

    def from_features(self, embeddings: torch.Tensor, real: torch.Tensor, head: torch.Tensor) -> EncoderOutput:
        B, K, _ = embeddings.shape
        cos = embeddings.float() @ self.name_embeddings.T  # (B, K, L)
        sims = torch.full((B, K, CLASSES), -1.0, dtype=cos.dtype, device=cos.device)
        sims = sims.scatter_reduce(2, self.name_class.expand(B, K, -1), cos, reduce="amax")  # (B, K, 1000)
        dist = (sims / self.label_temp).softmax(-1)  # (B, K, 1000): what each candidate names
        concrete = sims.max(-1).values  # (B, K): how well it names anything at all
        score = (concrete + self.head_bonus * head.float()) / self.word_temp
        weight = score.masked_fill(~real, float("-inf")).softmax(-1)  # (B, K)
        tokens = torch.cat([dist, weight.unsqueeze(-1), concrete.unsqueeze(-1)], -1)  # (B, K, 1002)
        best = concrete.masked_fill(~real, -1.0).gather(1, weight.argmax(1, keepdim=True))  # (B, 1)
        pooled = torch.cat([(weight.unsqueeze(-1) * dist).sum(1), best], -1)  # (B, 1001)
        return EncoderOutput(tokens=tokens, mask=real.bool(), pooled=pooled)

    def forward(self, **inputs) -> EncoderOutput:
        return self.from_features(**self.extract(**inputs))

    def known_words(self) -> None:
        return None  # it reads any word; whether a word names an ImageNet concept is the domain's question
