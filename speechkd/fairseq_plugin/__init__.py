"""speechkd's fairseq plugin: ``--user-dir $SPEECHKD_ROOT/speechkd/fairseq_plugin``.

fairseq imports this directory as the top-level module ``fairseq_plugin``; every import below is
absolute so that each model, criterion and task registers exactly once (under ``speechkd.*``).
"""
