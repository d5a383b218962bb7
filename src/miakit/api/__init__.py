"""The public API's modules: `arrays` (score, evaluate, attacks), `runs` (Run) and `audits`
(audit). Use them as `miakit.<name>`: `miakit.__all__` is the public surface."""
