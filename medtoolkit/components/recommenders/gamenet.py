"""``gamenet``: GAMENet (Shang et al., AAAI 2019), every visit of a batch in one pass.

``query = encoder(batch)`` (``[B, T, D]``), ``read = memory(query, batch)``
(``[B, T, R]``), then ``[query, read] -> ReLU -> Linear(hidden) -> ReLU -> Linear(n_drugs)``.
With the default ``gru`` encoder and ``gcn`` memory this is GAMENet's architecture; any
registered encoder / memory can be slotted in (ALGNet's ablations, for instance).

The reference predicts visit t from the prefix ``1..t`` with one forward pass per visit;
here all visits are computed at once and causality comes from the parts (forward RNN,
causal history attention): visit t sees codes of visits <= t and medications of visits < t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from medtoolkit.components.base import Recommender
from medtoolkit.components.params import Node, Params, slot

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch


class GAMENet(Recommender):
    """Graph-augmented memory network recommender.

    Example (Python, without a config file)::

        from medtoolkit.components.encoders.gru import GRUEncoder
        from medtoolkit.components.memories.gcn import GCNMemory

        model = GAMENet(
            GAMENet.Params(encoder=Node.of(GRUEncoder, dropout=0.5), memory=Node.of(GCNMemory)),
            schema,
        )
        logits = model(batch)  # [B, T, n_drugs]

    ``GAMENet(GAMENet.Params(), schema)`` also works: unresolved slot defaults
    (``Node(type="gru")``) are looked up in the default plugin host.
    """

    class Params(Params):
        encoder: Node = slot("encoder", "gru", description="visit encoder producing the queries")
        memory: Node = slot("memory", "gcn", description="drug memory read with the queries")
        hidden_dim: int = Field(128, ge=1, description="width of the output MLP's hidden layer")

    params: Params

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        super().__init__(params, schema)
        assert schema is not None  # checked by Recommender
        p = self.params
        self.encoder = p.encoder.resolve("encoder").build(schema)
        self.memory = p.memory.resolve("memory").build(schema, query_dim=self.encoder.output_dim)
        width = self.encoder.output_dim + self.memory.output_dim
        self.output = nn.Sequential(
            nn.ReLU(),
            nn.Linear(width, p.hidden_dim),
            nn.ReLU(),
            nn.Linear(p.hidden_dim, schema.n_drugs),
        )

    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]`` for every visit (values at padding visits are meaningless)."""
        query = self.encoder(batch)  # [B, T, D]
        read = self.memory(query, batch)  # [B, T, R]
        return self.output(torch.cat([query, read], dim=-1))
