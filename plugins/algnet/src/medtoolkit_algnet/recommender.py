"""``algnet``: ALGNet (Eq. 8-12), every visit of a batch in one pass.

``a = encoder(batch)`` (``[B, T, D]``, Eq. 8), ``[o_b, o_d] = memory(a, batch)``
(``[B, T, 2D]``, Eq. 10-11), then ``y = MLP([a, o_b, o_d])`` (Eq. 12: the paper's
``sigma(a_t, o_b, o_d)`` names the combination only; here it is GAMENet's
``ReLU -> Linear(hidden) -> ReLU -> Linear(n_drugs)``, the sigmoid being applied by the
losses and ``predict_proba``). This is the core ``gamenet`` recommender with ALGNet's
default parts, so the ablations are slot swaps: ``memory: {type: gcn}`` or
``encoder: {type: gru}`` / ``{type: dual_self_attention, rnn: lstm|none}``.
"""

from __future__ import annotations

from pydantic import Field

from medtoolkit.components.params import Node, slot
from medtoolkit.components.recommenders.gamenet import GAMENet


class ALGNet(GAMENet):
    """ALGNet recommender: PRE encoder, light-GCN memory, history memory, output MLP.

    Example (Python)::

        from medtoolkit.components.params import Node
        from medtoolkit_algnet import ALGNet, DualSelfAttentionEncoder, LightGCNMemory

        model = ALGNet(
            ALGNet.Params(encoder=Node.of(DualSelfAttentionEncoder), memory=Node.of(LightGCNMemory)),
            schema,
        )
        logits = model(batch)  # [B, T, n_drugs]

    Shapes: ``forward(batch) -> [B, T, n_drugs]`` logits; visit t sees the codes of visits
    <= t and the medications of visits < t.
    """

    class Params(GAMENet.Params):
        encoder: Node = slot("encoder", "dual_self_attention", description="visit encoder producing a_t (PRE)")
        memory: Node = slot("memory", "lightgcn", description="drug memory read with a_t (o_b, o_d)")
        hidden_dim: int = Field(128, ge=1, description="width of the output MLP's hidden layer")

    params: Params
