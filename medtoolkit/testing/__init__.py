"""Public test kit: fake data and component conformance checks (also a pytest plugin).

* :func:`fake_ehr`, :func:`fake_schema`, :func:`fake_batch`: small deterministic data
  (:func:`fake_smiles`, :func:`fake_substructure_mask`: the schema's drug molecules);
* :func:`check_component`: conformance checks for a component class;
* pytest fixtures ``fake_ehr_data``, ``fake_schema``, ``fake_batch`` (registered automatically
  through the ``pytest11`` entry point, see :mod:`medtoolkit.testing.pytest_plugin`).
"""

from medtoolkit.testing.conformance import check_component
from medtoolkit.testing.fake import fake_batch, fake_ehr, fake_schema, fake_smiles, fake_substructure_mask

__all__ = ["check_component", "fake_batch", "fake_ehr", "fake_schema", "fake_smiles", "fake_substructure_mask"]
