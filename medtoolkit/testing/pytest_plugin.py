"""pytest plugin (entry point ``pytest11: medtoolkit``): fixtures for plugin authors.

Installed automatically with medtoolkit; any test suite gets:

* ``fake_ehr_data``: a small deterministic :class:`~medtoolkit.data.ehr.EHRData`
  (:func:`medtoolkit.testing.fake_ehr`);
* ``fake_schema``: its :class:`~medtoolkit.components.schema.DataSchema`;
* ``fake_batch``: a :class:`~medtoolkit.data.batching.PaddedBatch` of all its patients;
* ``one_torch_thread``: one torch CPU thread for the rest of the module (tiny models run
  fastest that way and leave the other cores alone); a whole module opts in with
  ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.

Example::

    def test_my_encoder(fake_schema, fake_batch):
        encoder = MyEncoder(MyEncoder.Params(), fake_schema)
        assert encoder(fake_batch).shape[:2] == fake_batch.visit_mask.shape
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path
    from medtoolkit.components.schema import DataSchema
    from medtoolkit.data.batching import PaddedBatch
    from medtoolkit.data.ehr import EHRData


@pytest.fixture
def fake_ehr_data() -> "EHRData":
    """A tiny deterministic dataset (12 patients, 30/20 codes, 15 drugs, 5 DDI pairs)."""
    from medtoolkit.testing.fake import fake_ehr

    return fake_ehr()


@pytest.fixture
def fake_schema(fake_ehr_data: "EHRData") -> "DataSchema":
    """The :class:`DataSchema` of ``fake_ehr_data`` (co-occurrence over all its visits)."""
    from medtoolkit.testing.fake import fake_schema as make_schema

    return make_schema(fake_ehr_data)


@pytest.fixture
def fake_batch(fake_ehr_data: "EHRData") -> "PaddedBatch":
    """A padded batch of every patient of ``fake_ehr_data``."""
    from medtoolkit.testing.fake import fake_batch as make_batch

    return make_batch(fake_ehr_data)


@pytest.fixture
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> "Path":
    """``MEDTOOLKIT_CACHE_DIR`` pointed at a fresh temporary directory for one test.

    Whatever the test caches by default (datasets, molecule graphs) goes there, never to the
    user's cache. Returns the directory.
    """
    from pathlib import Path

    directory = Path(tmp_path_factory.mktemp("medtoolkit-cache"))
    monkeypatch.setenv("MEDTOOLKIT_CACHE_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch CPU thread from first use to the end of the module, then the previous count.

    Module-scoped so that module-scoped fixtures that train (set up before any
    function-scoped fixture) run under the same thread count as the tests that use them.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
