"""Scoring and reporting.

* ``normalize``: Whisper text normalisation (+ the DistilWhisper split for th/zh/ja);
* ``wer``: WER/CER with kaldialign alignments and sclite-style counts;
* ``bleu``: BLEU/chrF with sacrebleu (score + signature);
* ``inputs``/``scoring``: reading Kaldi text files and lhotse references, scoring a set;
* ``decode_files``: icefall-style ``recogs-``/``errs-``/``*-summary-``/``scores-<set>`` files;
* ``env``/``results``: environment, git revision and the RESULTS.md writer.
"""
