"""``mageagent eval``: HumanEval and BFCL through the patterns, recorded per item, scored with intervals."""
