"""The adapter a :class:`~localize.training.Trainer` trains: the method's parameters and a head on the frozen base,
where they start (a usable prior's, or drawn from the seed), the forward from a split's rows to pooled vectors and
logits, the training loss, and the :class:`~localize.engine.AdapterWeights` it becomes.

A task prior whose rows name several annotators also trains each annotator's own head: the shared head plus an
offset per annotator, the offsets starting at zero.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from localize.activations import ActivationCache, pad_hidden
from localize.adapters import make_method
from localize.adapters.base import apply_head, init_head
from localize.base_model import BaseModel
from localize.engine import AdapterWeights, forward_pooled
from localize.training_args import TrainingArguments
from localize.training_rows import Split, loss_targets, row_lengths


class TrainableAdapter:
    """One user's (or a task prior's) adapter while it trains: ``method``, ``params``, ``head`` and, with annotators,
    ``annotator_offsets``. :meth:`start` sets their first values; ``encoder`` is the prior a head-only user reads."""

    def __init__(self, base: BaseModel, args: TrainingArguments, label_set: list[str], *,
                 annotations: dict[str, list[tuple[int, int]]] | None = None, num_annotators: int = 0) -> None:
        """``annotations``: per text, (annotator index, label index) of every label it was given."""
        self.base = base
        self.args = args
        self.label_set = label_set
        self.annotations = annotations
        self.num_annotators = num_annotators
        self.method = make_method(args.method, args.method_options, base.dims)
        self.encoder: AdapterWeights | None = None
        self.params: dict[str, torch.Tensor] = {}
        self.head: dict[str, torch.Tensor] = {}
        self.annotator_offsets: dict[str, torch.Tensor] = {}
        self.from_prior = False

    def start(self, init: AdapterWeights | None) -> None:
        """The first values of every tensor that trains: from ``init`` where it is a usable prior, else drawn from the
        seed (the method's parameters, then the head)."""
        self.params, self.head = self._initial_parameters(init, torch.Generator().manual_seed(self.args.seed))
        self.annotator_offsets = {}
        if self.annotations is not None:
            shape = (self.num_annotators, len(self.label_set))
            self.annotator_offsets = {"weight": torch.zeros(*shape, self.method.pooled_width, device=self.base.device),
                                      "bias": torch.zeros(*shape, device=self.base.device)}

    def _initial_parameters(self, init: AdapterWeights | None, generator: torch.Generator,
                            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        device = self.base.device
        init = init if self.args.init_from_prior else None
        if self.args.train_scope == "head":
            # A head on the prior's encoding; without a usable prior, a head on the frozen base (the head method's
            # own MLP trains too: it is part of the head).
            usable = init is not None and init.labels == self.label_set and init.encoder is None
            if usable and init.params:  # a private copy: a resident prior's tensors are slots an engine may reuse
                self.encoder = AdapterWeights(init.method, {k: v.detach().clone() for k, v in init.params.items()},
                                              {}, init.labels, init.base_model_id, version=init.version,
                                              meta=dict(init.meta))
            if self.method.name != "head" or self.encoder is not None:
                options = {"hidden": self.args.head_hidden}
                if self.encoder is not None and self.encoder.method.pooled_width != self.base.dims.hidden_size:
                    options["input_width"] = self.encoder.method.pooled_width  # several priors side by side
                self.method = make_method("head", options, self.base.dims)
            elif self.args.head_hidden:  # a head on the frozen base: head_hidden is its MLP, as for any head user
                options = {**self.args.method_options, "hidden": self.args.head_hidden}
                self.method = make_method("head", options, self.base.dims)
            # A linear head prior (no parameters of its own) starts any head: its MLP, if any, as the identity.
            self.from_prior = usable and (self.encoder is not None or not init.params
                                          or init.method.family() == self.method.family())
            if self.from_prior:
                head = {k: v.detach().clone().float().to(device) for k, v in init.head.items()}
                if self.encoder is None and init.params:
                    params = {k: v.detach().clone().float().to(device) for k, v in init.params.items()}
                else:  # the user's own MLP, if any, starts as the identity: the head begins as the prior's
                    params = {k: v.to(device) for k, v in self.method.init_params(self.base, generator).items()}
                return params, head
            init = None
        self.from_prior = (init is not None and init.method.family() == self.method.family()
                           and init.labels == self.label_set)
        if self.from_prior:
            params = {k: v.detach().clone().float().to(device) for k, v in init.params.items()}
            head = {k: v.detach().clone().float().to(device) for k, v in init.head.items()}
            return params, head
        params = {k: v.to(device) for k, v in self.method.init_params(self.base, generator).items()}
        head = {k: v.to(device) for k, v in init_head(len(self.label_set), self.method.pooled_width, generator).items()}
        return params, head

    # -- the rows it reads ------------------------------------------------------------------------------------------
    def split_of(self, texts: list[str], targets: list[int], cache: ActivationCache,
                 progress: Callable[[int, int], None]) -> Split:
        """``texts`` with their label indexes, and the inputs the forward starts from: the prior's encodings, the
        token ids (a method that changes the embeddings) or the frozen activations at the method's first layer."""
        split = Split(texts=texts, targets=torch.tensor(targets, dtype=torch.long))
        if self.encoder is not None:  # the head reads the prior's encoding, computed once per text and cached
            split.inputs = cache.encoded(self.base, self.encoder, texts, progress=progress)
        elif self.method.embeds_inputs:
            ids, mask = self.base.tokenize(texts) if texts else (None, None)
            split.input_ids = [ids[i, : int(mask[i].sum())].cpu() for i in range(len(texts))] if texts else []
        else:
            split.inputs = cache.frozen_inputs(self.base, texts, self.method.start_layer, progress=progress)
        return split

    # -- the forward ------------------------------------------------------------------------------------------------
    def pooled(self, split: Split, batch: list[int], *, training: bool) -> torch.Tensor:
        size = len(batch)
        params = self.params  # one user's: shared by every row, no batch dimension
        device = self.base.device
        if self.method.embeds_inputs:
            rows = [split.input_ids[i] for i in batch]
            longest = max(len(r) for r in rows)
            input_ids = torch.zeros(size, longest, dtype=torch.long)
            mask = torch.zeros(size, longest, dtype=torch.long)
            for i, r in enumerate(rows):
                input_ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
            return forward_pooled(self.base, self.method, params, None, mask.to(device),
                                  input_ids=input_ids.to(device), training=training,
                                  pooled_dropout=self.args.pooled_dropout)
        rows = [split.inputs[i] for i in batch]
        if rows[0].dim() == 1:  # pooled embeddings: nothing inside the encoder changes
            start, mask = torch.stack(rows), torch.ones(size, 1, dtype=torch.long)
        else:
            start, mask = pad_hidden(rows)
        return forward_pooled(self.base, self.method, params, start.to(device), mask.to(device),
                              training=training, pooled_dropout=self.args.pooled_dropout)

    def all_pooled(self, split: Split) -> torch.Tensor:
        """Every row's pooled vector, in the split's order. Rows that run encoder layers go in chunks of similar
        length: in the split's order a chunk pads to its longest row, about three times the work on tweets."""
        rows = len(split.texts)
        if not rows:
            return torch.empty(0, self.method.pooled_width, device=self.base.device)
        lengths = row_lengths(split)
        order = sorted(range(rows), key=lengths.__getitem__) if lengths is not None else list(range(rows))
        with torch.no_grad():
            pooled = torch.cat([self.pooled(split, order[start : start + 128], training=False)
                                for start in range(0, rows, 128)])
        restored = torch.empty_like(pooled)
        restored[torch.tensor(order, device=pooled.device)] = pooled
        return restored

    def head_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return apply_head(pooled, self.head["weight"], self.head["bias"])

    def all_logits(self, split: Split) -> torch.Tensor:
        return self.head_logits(self.all_pooled(split))

    # -- the loss ---------------------------------------------------------------------------------------------------
    def training_loss(self, split: Split, batch: list[int], class_weights: torch.Tensor | None) -> torch.Tensor:
        """The batch's cross-entropy under the shared head, plus its annotators' under their own heads."""
        pooled = self.pooled(split, batch, training=True)
        logits = self.head_logits(pooled)
        targets = loss_targets(split, batch).to(logits.device)
        loss = F.cross_entropy(logits.float(), targets, weight=class_weights)
        if self.annotations is not None:
            loss = loss + self.args.annotator_loss_weight * self.annotator_loss(
                pooled, [split.texts[i] for i in batch], class_weights)
        return loss

    def scored(self, split: Split, class_weights: torch.Tensor | None) -> tuple[float, list[int]]:
        """The split's loss (the shared head's cross-entropy plus, for a prior, its annotators') and each row's top
        label, without dropout."""
        pooled = self.all_pooled(split)
        all_logits = self.head_logits(pooled)
        targets = loss_targets(split, slice(None)).to(all_logits.device)
        loss = F.cross_entropy(all_logits, targets, weight=class_weights).item()
        if self.annotations is not None:  # the annotators' own labels are part of what the prior learns
            with torch.no_grad():
                loss += self.args.annotator_loss_weight * self.annotator_loss(pooled, split.texts, class_weights).item()
        return loss, all_logits.argmax(-1).cpu().tolist()

    def annotator_loss(self, pooled: torch.Tensor, texts: list[str], class_weights: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy of every label the batch's texts were given, under its annotator's own head."""
        pairs = [(row, who, target) for row, text in enumerate(texts) for who, target in self.annotations[text]]
        rows, who, targets = (torch.tensor(column, device=pooled.device) for column in zip(*pairs))
        weight = self.head["weight"] + self.annotator_offsets["weight"][who]
        bias = self.head["bias"] + self.annotator_offsets["bias"][who]
        return F.cross_entropy(apply_head(pooled[rows], weight, bias).float(), targets, weight=class_weights)

    # -- its state --------------------------------------------------------------------------------------------------
    def trainable(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.head.values(), *self.annotator_offsets.values()]

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        """A copy of the method's parameters and the head. Not the annotator offsets: restoring a snapshot (the best
        epoch's) leaves them as the last epoch left them."""
        return {
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "head": {k: v.detach().clone() for k, v in self.head.items()},
        }

    def restore(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
            for k, v in state["head"].items():
                self.head[k].copy_(v)

    def reset_annotator_heads(self) -> None:
        with torch.no_grad():
            for tensor in self.annotator_offsets.values():
                tensor.zero_()

    def fold_into_head(self, temperature: float, offsets: torch.Tensor | None) -> None:
        """Divides the head by a fitted ``temperature`` and adds a decision rule's ``offsets`` to its bias: the
        logits it serves come calibrated and shifted, at no cost."""
        with torch.no_grad():
            if temperature != 1.0:
                self.head["weight"].div_(temperature)
                self.head["bias"].div_(temperature)
            if offsets is not None:
                self.head["bias"].add_(offsets.to(self.head["bias"]))

    def weights(self, meta: dict) -> AdapterWeights:
        """The adapter as it stands, its tensors copied; a head on a stored prior references that prior in ``meta``."""
        if self.encoder is not None and "source" in self.encoder.meta:
            meta = {**meta, "encoder": dict(self.encoder.meta["source"])}
        return AdapterWeights(
            method=self.method,
            params={k: v.detach().clone() for k, v in self.params.items()},
            head={k: v.detach().clone() for k, v in self.head.items()},
            labels=self.label_set,
            base_model_id=self.base.dims.model_id,
            meta=meta,
            encoder=self.encoder,
        )


__all__ = ["TrainableAdapter"]
