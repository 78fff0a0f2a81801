"""Names shared by the ``dpr`` recommender, its losses and the package task."""

#: extra ``[n_visits, 1 + negatives]``: scores of each visit's own package graph (column 0) and of
#: sampled other packages of the batch (``package_bpr`` reads it)
PACKAGE_SCORES = "package_scores"
#: extra ``(logits [E, 3], labels [E])`` over the batch graphs' labelled edges (``edge_type`` reads it)
EDGE_TYPES = "edge_types"
#: batch item holding the package graphs of the batch's real visits (supplied by the task's collate)
PACKAGE_GRAPHS = "package_graphs"
