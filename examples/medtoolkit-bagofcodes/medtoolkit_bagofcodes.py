import medtoolkit
import torch
from medtoolkit.components.base import Encoder
from medtoolkit.components.params import Params
from medtoolkit.components.schema import DataSchema
from medtoolkit.data import MEDICATIONS, PaddedBatch
from pydantic import PositiveInt


class BagOfCodesEncoder(Encoder):
    """Bag of codes: a visit is the sum of its codes' embeddings (a linear map of its multi-hot codes)."""

    class Params(Params):
        output_dim: PositiveInt = 64

    def __init__(self, params: Params | None = None, schema: DataSchema | None = None) -> None:
        super().__init__(params, schema)  # one table per input vocabulary; row 0 (padding) stays zero
        self.embed = torch.nn.ModuleDict({v: torch.nn.Embedding(n + 1, self.output_dim, padding_idx=0)
                                          for v, n in schema.vocab_sizes.items() if v != MEDICATIONS})

    output_dim = property(lambda self: self.params.output_dim)

    def forward(self, batch: PaddedBatch) -> torch.Tensor:  # [B, T, output_dim]; visit t reads only its codes
        return sum(embed(batch.codes[v]).sum(dim=2) for v, embed in self.embed.items())


@medtoolkit.hookimpl
def register_encoders(register: medtoolkit.hookspecs.Register) -> None:
    register("bag_of_codes", BagOfCodesEncoder)
