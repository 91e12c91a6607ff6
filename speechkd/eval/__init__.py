"""Scoring and reporting.

* ``normalize``: Whisper text normalisation (+ the DistilWhisper split for th/zh/ja);
* ``wer``: WER/CER with kaldialign alignments and sclite-style counts;
* ``bleu``: BLEU/chrF with sacrebleu (score + signature);
* ``inputs``/``scoring``: reading Kaldi text files and lhotse references, scoring a set;
* ``decode_files``: icefall-style ``recogs-``/``errs-``/``*-summary-``/``scores-<set>`` files;
* ``env``/``results``: environment, git revision and the RESULTS.md writer (RESULTS.md opens
  with what the run shows; RESULTS-details.md beside it holds environment, commands and sclite
  tables);
* ``report_kit``: what the method reports share (missing-value mark, number formats, score and
  parameter loading, comparisons with ties, the degeneracy rule, the claims section);
* ``<method>_data`` / ``<method>_report``: each method's inputs and RESULTS.json rows, and its
  tables and claims (``distilwhisper``, ``s2lora``, ``pepsi``, ``st_kd``, ``distill_w2v2``).
"""
